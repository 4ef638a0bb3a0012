"""The verified blob cache: repeat pulls served from local disk, never weakening who may pull what.

settings.py   the `cache:` config section
store.py      content-addressed files + the sqlite index (entries, repository links, tags, LRU)
fill.py       filling while a blob streams to the client; one upstream fetch per cold blob
fileserver.py the nginx that sends cached files (signed, short-lived URLs)
serve.py      what a hit looks like to the client (local manifests, 307 or a re-pointed flow)
manifests.py  tag revalidation upstream (HEAD) and stale answers when the upstream fails
pipeline.py   `Cache`: the calls the request pipeline (handling.py) makes
stats.py      counters for /metrics and reports
"""
