"""PROXY CAPACITY [<horizon>] [RATE <pct>] [JSON]: the capacity report of this process.

The report (`proxy.observe.capacity`) is read from the process' `History`: the text
`georedis capacity` prints, as PROXY INFO answers (a verbatim string); with JSON, the
same report as data, fitted points included, which `georedis capacity` renders and
plots itself.
"""

from __future__ import annotations

import json

from proxy.admin.host import AdminClient, AdminHost
from proxy.errors import bad_argument, usage
from proxy.observe.capacity import DEFAULT_HORIZON, parse_rate, render_text, report
from proxy.resp.replies import encode_bulk, encode_verbatim

USAGE = "PROXY CAPACITY [<horizon, e.g. 6months>] [RATE <percent per month>] [JSON]"


def capacity(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    words = [a.decode(errors="replace") for a in args]
    as_json = bool(words) and words[-1].upper() == "JSON"
    if as_json:
        words = words[:-1]
    rate: float | None = None
    if len(words) >= 2 and words[-2].upper() == "RATE":
        try:
            rate = parse_rate(words[-1])
        except ValueError as e:
            return bad_argument(str(e))
        words = words[:-2]
    if len(words) > 1:
        return usage(USAGE)
    try:
        r = report(app.history, words[0] if words else DEFAULT_HORIZON, rate)
    except ValueError as e:
        return bad_argument(str(e))
    if as_json:
        return encode_bulk(json.dumps(r, allow_nan=False))
    return encode_verbatim(render_text(r), s.proto)
