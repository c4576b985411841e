import sys

from RibFracSegLib.cli import main

sys.exit(main())
