"""What the services' web pages share (the evidence dashboard, the gateway's console): form
tokens, login throttling, security headers and fingerprinted static files."""
