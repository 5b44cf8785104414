import sys

from fss_attr.cli import main

sys.exit(main())
