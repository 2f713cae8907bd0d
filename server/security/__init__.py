"""Security primitives: password and secret hashing (hashing.py), JWTs (jwt_tokens.py)."""
