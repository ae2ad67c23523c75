import sys

from esr.cli import main

sys.exit(main())
