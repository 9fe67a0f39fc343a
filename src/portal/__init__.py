"""Clinic Portal: operations portal for neuromuscular and sports-massage clinics."""

import os

# Piccolo finds its engine through this module; set before any table is imported.
os.environ.setdefault("PICCOLO_CONF", "portal.piccolo_conf")
