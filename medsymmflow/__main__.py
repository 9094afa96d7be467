import sys

from medsymmflow.cli import main

sys.exit(main())
