import sys

from quantum.app.cli import main

sys.exit(main())
