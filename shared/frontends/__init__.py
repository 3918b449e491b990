"""The edges: the HTTP operations the function app serves and the command line, each composing the
engine (``shared.app``) for its caller."""
