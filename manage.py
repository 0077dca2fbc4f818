#!/usr/bin/env python3
"""Placeholder for the example project's manage.py (issue 9 replaces it)."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["orchestrix_demo"]:
        print("The example project is not built yet: see issue 9.")
        sys.exit(0)
    sys.exit("usage: python manage.py orchestrix_demo (the example project is not built yet)")
