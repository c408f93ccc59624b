import sys

from quantum.cli import main

sys.exit(main())
