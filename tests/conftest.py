"""Shared pytest configuration for the whole test suite."""

import pytest

# The contract suites in orchestrix.testing use plain `assert`; register the
# package before anything imports it so pytest rewrites those asserts and
# failures show the compared values.
pytest.register_assert_rewrite("orchestrix.testing")
