"""Where things are: the source tree, its examples, and the package under test."""

import os

import cymongoose

#: The repository root (tests/ sits right below it).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")

#: The directory holding the package under test (an install or the source tree),
#: put first on a child's path so it never picks up another copy.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(cymongoose.__file__)))
