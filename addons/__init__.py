"""shopguard: mitmproxy addons that show and stop the personal data sent to marketplaces."""

__version__ = "0.1.0"
