"""Odoo's test package for this addon: Odoo's test runner imports the modules listed here.

The pytest suite beside it never imports this package (see addon_layout.py).
"""

from . import test_metrics_route, test_ui_tour
