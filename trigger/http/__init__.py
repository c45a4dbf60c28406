"""The HTTP ingress: ``app`` builds the FastAPI app from the routers it is given and
serves it; ``errors`` gives every refusal one shape; ``connections`` limits slow and
surplus connections; ``credentials`` and ``sameorigin`` guard the operator surface
(token, no cross-site requests)."""
