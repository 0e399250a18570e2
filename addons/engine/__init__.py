"""The pure engine: configuration, host scope, masking. No mitmproxy import here."""
