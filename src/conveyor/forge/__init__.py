"""Forges: GitHub, GitLab, Gitea and Forgejo. What a webhook delivery from one says (its
signature checked first, then its payload read into one `ForgeEvent`), and how a commit
status is sent back to it. One module per forge behind the `Forge` Protocol (`model.py`),
named in `FORGE_FACTORIES` (conveyor/backends.py) and made by `registry.FORGES`.

Nothing here knows the server: it takes headers and bytes and returns typed values, so
every verifier and parser is tested on the forges' documented payloads alone.
"""
