"""A stand-in that cannot be imported: tests/eval/test_grading_defects.py puts this directory
first on the path to see how the verify pool reports workers that cannot start."""

raise ImportError("math_verify is hidden for this test")
