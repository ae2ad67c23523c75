"""Video through ``esr upscale``: PyAV decode -> the same :class:`esr.upscaler.Upscaler` -> encode, resumable.

Modules, one job each (only :mod:`esr.video.options` is imported without PyAV):

- :mod:`~esr.video.options`: the ``--video-*`` settings and the container table;
- :mod:`~esr.video.codecs`: which encoders exist in the bundled FFmpeg, their options and pixel formats;
- :mod:`~esr.video.probe`: open a source, check it, decode its frames to RGB arrays;
- :mod:`~esr.video.encode`: RGB arrays -> encoded segment files (NUT) with the source's timestamps;
- :mod:`~esr.video.segments`: the resume folder beside the output (manifest + finished segments);
- :mod:`~esr.video.join`: segments + the source's audio/subtitle/data packets -> the output file;
- :mod:`~esr.video.stages`: bounded background stages (decode / model / encode overlap);
- :mod:`~esr.video.runner`: one video from source to output.
"""
