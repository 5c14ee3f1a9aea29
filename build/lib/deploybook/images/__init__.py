"""Images: docker build with OCI labels, push with the digest confirmed, the registry v2 API.

May import ``deploybook.errors`` only.
"""
