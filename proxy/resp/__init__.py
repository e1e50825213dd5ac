"""The RESP codec, sans-IO: client bytes to commands, backend bytes to reply boundaries,
and encoders for replies the proxy makes. No asyncio, no sockets; imports only
`config.errors` (the root of the error hierarchy).
"""
