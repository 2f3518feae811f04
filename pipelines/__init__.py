"""Settle: gain-share and service-credit settlement for outsourced contact-centre contracts."""

__version__ = "0.1.0"
