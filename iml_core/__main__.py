import sys

from iml_core.cli import main

sys.exit(main())
