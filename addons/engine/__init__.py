"""The pure engine: what shopguard knows about requests and policies; no mitmproxy import."""
