"""`python -m puffer_cluster.cli ...`: the same as `puffer-cluster ...`."""
import sys

from puffer_cluster.cli import main

sys.exit(main())
