"""The built-in checks, one module per area. Importing this package registers them all.

The import order below is the order in which `core list` and reports show the checks within a
level, so it is kept by hand (hence no import sorting here).
"""

# isort: skip_file
from silverlining.core.checks import buckets  # noqa: F401
from silverlining.core.checks import objects  # noqa: F401
from silverlining.core.checks import metadata  # noqa: F401
from silverlining.core.checks import ranges  # noqa: F401
from silverlining.core.checks import listing  # noqa: F401
from silverlining.core.checks import multipart  # noqa: F401
from silverlining.core.checks import copying  # noqa: F401
from silverlining.core.checks import deletion  # noqa: F401
from silverlining.core.checks import errors  # noqa: F401
from silverlining.core.checks import auth  # noqa: F401
from silverlining.core.checks import presigned  # noqa: F401
from silverlining.core.checks import consistency  # noqa: F401
from silverlining.core.checks import conditional  # noqa: F401
from silverlining.core.checks import checksums  # noqa: F401
from silverlining.core.checks import tagging  # noqa: F401
from silverlining.core.checks import streaming  # noqa: F401
from silverlining.core.checks import isolation  # noqa: F401
from silverlining.core.checks import durability  # noqa: F401
