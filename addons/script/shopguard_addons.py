"""Load every shopguard addon into your own mitmproxy: `mitmdump -s $(shopguard addon-path)`."""

from shopguard.chain import make_addons

addons = make_addons()
