import sys

from vadbench.cli import main

sys.exit(main())
