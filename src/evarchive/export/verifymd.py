"""VERIFY.md: how a clerk checks the bundle, step by step with standard tools."""

from __future__ import annotations

from typing import Any

from .. import bundle_anchors
from ..verify_bundle import main_record
from .model import WACZ_NAME


def render_verify(data: dict[str, Any]) -> str:
    """VERIFY.md: step by step, with standard tools, and concrete commands for these exhibits."""
    head = data["custody"]["head"]
    lines = [VERIFY_INTRO.format(head_seq=head["seq"], head_hash=head["entry_hash"], wacz=WACZ_NAME)]
    for ex in data["exhibits"][:200]:
        rec = main_record(ex)
        lines.append(f"# exhibit {ex['exhibit']}: {rec['record_id']} (expect {rec['member_sha256']})\n"
                     f"tail -c +{rec['wacz_offset'] + 1} {WACZ_NAME} | head -c {rec['length']} | sha256sum")
    if len(data["exhibits"]) > 200:
        lines.append(f"# ... exhibits.csv gives the offset and length of the other {len(data['exhibits']) - 200}")
    lines.append("```\n")
    lines.append(VERIFY_CUSTODY.format(head_seq=head["seq"], head_hash=head["entry_hash"],
                                       scope=("every entry from the first exhibit's entry to the head: the "
                                              "chain can be recomputed link by link"
                                              if data["custody"]["scope"] == "chain" else
                                              "only the entries that vouch for the exhibits (and the "
                                              "timestamps, keys and head): each entry's own hash and "
                                              "signature can be checked, the links between them cannot")))
    for ts in data["custody"]["timestamps"]:
        lines.append(f"openssl ts -verify -token_in -in {ts['token']} -digest {ts['digest']} \\\n"
                     f"    -CAfile YOUR-TRUSTED-TSA-ROOT.pem -untrusted {ts['chain']}\n"
                     f"# token {ts['id']}: {ts['tsa_subject']} at {ts['gen_time']}, covers log entry "
                     f"{ts['covers_seq']}")
    if not data["custody"]["timestamps"]:
        lines.append("# (this archive had no RFC 3161 timestamp covering these exhibits at export time)")
    lines.append("```\n")
    lines += bundle_anchors.verify_lines(data)
    lines.append(VERIFY_REPLAY.format(wacz=WACZ_NAME))
    if data.get("viewer"):
        lines.append(VERIFY_VIEWER.format(page=data["viewer"]["page"], software=data["viewer"]["software"],
                                          licence=data["viewer"]["licence"]))
    return "\n".join(lines)


VERIFY_INTRO = """# Verifying this citation bundle

Everything here can be checked with standard tools: `sha256sum` (coreutils; on macOS
`shasum -a 256`; on Windows PowerShell's `Get-FileHash`), Python 3.8 or later (nothing to
install; on Windows from python.org, run as `py`), and optionally `openssl`. Nothing needs
evarchive, and nothing needs the network. Open a terminal in this folder first.

## 1. Every file is as exported

Linux:

```sh
sha256sum -c SHA256SUMS
```

macOS:

```sh
shasum -a 256 -c SHA256SUMS
```

Windows (PowerShell):

```powershell
Get-Content SHA256SUMS | ForEach-Object {{
  $hash, $name = $_ -split '  ', 2
  $found = (Get-FileHash -Algorithm SHA256 -LiteralPath $name).Hash
  if ($found -eq $hash.ToUpper()) {{ "OK      $name" }} else {{ "FAILED  $name" }}
}}
```

Every line must say `OK`. `SHA256SUMS` itself is vouched for by the archive: its SHA-256 is in
the custody-log entry that recorded this export (ask the archive holder for
`evarchive log --json`, event `export`).

## 2. Every exhibit record, the custody log and the index agree

```sh
python3 verify_bundle.py        # Windows: py verify_bundle.py
```

It re-hashes every file, checks the WACZ package ({wacz}: its `datapackage.json` hashes),
cuts every exhibit record out of the WARC files inside it and checks its SHA-256 and its WARC
block and payload digests, checks each screenshot and PDF in `artefacts/` against the block of
its record, undoes each page's gzip/deflate content coding to recompute the
SHA-256 of its decoded content (the hash a saved copy of the page matches; the index shows it
beside the hash of the body as served), checks that each record is the one the custody log
recorded at capture (same record id, same SHA-256) and that whether it counts as support
follows from the verdict recorded at capture (a soft 404 or a wall never does), recomputes
every custody-log entry hash and the chain up to the head, checks signatures and timestamp
imprints, checks that the live state shown for each source is its latest check as the custody
log recorded it, and that each exhibit's time is its WARC record's own `WARC-Date`, no later
than the time (genTime) inside the token that covers it. Then it
checks everything you are shown: it works out every fact of `exhibits.html`, `exhibits.txt`,
`exhibits.csv` and `report.html` again from what the custody log vouches for (each capture's
record of itself, the claims as the report's import recorded them, each independent witness's
record) and compares each file with what those facts give, naming the file, the exhibit or
claim, and the fact that differ.
It prints `FAIL` with the file and record for anything that does not match, and exits 1.
On a large bundle it inflates and hashes the records in worker processes, one per core (at
most 4); `--jobs 1` keeps it to one process, `--jobs N` sets how many.

A bundle can only prove itself against facts from outside it: keys and timestamps inside it
prove nothing against someone who rebuilt it whole. Without anchors the last line reads
`BUNDLE CONSISTENT, NOT ANCHORED`. Give it what the archive published or handed over separately,
and it reads `BUNDLE VERIFIED AND ANCHORED`, naming each anchor (`--require-anchor` makes an
unanchored bundle exit 1):

```sh
python3 verify_bundle.py --head {head_seq}:{head_hash}   # the head the archive published
python3 verify_bundle.py --public-key their-key.pem            # the archive's key, obtained out of band
python3 verify_bundle.py --tsa-root tsa-root.pem               # also run openssl on each timestamp
```

## 3. One record by hand

A WACZ is a zip whose WARC files are stored uncompressed, so each record's exact bytes sit at
a fixed offset of `{wacz}` (column `warc_offset` plus the entry's start; `bundle.json` gives
`wacz_offset`). Each command prints the record's SHA-256; it must equal the `Record SHA-256` in
the exhibit index and the `member_sha256` in the custody-log entry. Add `| gunzip | head -c 2000`
instead of `| sha256sum` to read the record's headers.

```sh"""

VERIFY_CUSTODY = """## 4. The custody log

`custody/log.jsonl` holds {scope}. Each entry's `entry_hash` is the SHA-256 of the JSON object
`{{"at","details","event","prev_hash","seq","subject"}}` (keys sorted, no spaces, `details`
parsed from the stored text); `prev_hash` is the previous entry's hash. The head at export was
entry {head_seq}:

    {head_hash}

Compare it with the head the archive holder published or wrote down before the dispute
(`evarchive log --head`). A capture entry (`event` = `capture`) carries the capture row and,
for each record, `record_id`, `warc_file`, `offset`, `length` and `member_sha256`: the values
the exhibit index shows. A signature (`ed25519:<key id>:<base64>`) signs the bytes
`evarchive custody entry v1\\n` followed by the entry hash in hex, with the key in
`custody/keys/<key id>.pem`; `verify_bundle.py` checks it, or with OpenSSL 3:

```sh
printf 'evarchive custody entry v1\\n%s' ENTRY_HASH > msg
echo BASE64_SIGNATURE | base64 -d > sig
openssl pkeyutl -verify -pubin -inkey custody/keys/KEY_ID.pem -rawin -in msg -sigfile sig
```

## 5. Trusted timestamps (RFC 3161)

Each token in `custody/timestamps/` is a TSA's signed statement that a custody-log head existed
at its time; the log entries before that head (and so the captures they vouch for) existed then,
or earlier: a token proves "no later than", and one taken at export only that much.
The token's imprint is the entry hash itself (SHA-256). Verify each with your own trusted copy of
the TSA's root certificate:

```sh"""

VERIFY_REPLAY = """## 6. Seeing the pages

`{wacz}` is a WACZ 1.1.1 web archive (it passes `wacz validate -f {wacz}`). Open it in
ReplayWeb.page (https://replayweb.page, "Choose File": the file is read in your browser, not
uploaded), or with pywb:

```sh
wb-manager init bundle && wb-manager add --unpack-wacz bundle {wacz} && wayback
```

Pages are listed as "Exhibit N". Replay shows the response bytes exactly as archived.
"""

VERIFY_VIEWER = """This bundle also carries a replay viewer, {software} ({licence}; its licence is in
`viewer/LICENSE`), which needs no network. Serve this folder on your own computer only:

```sh
python3 -m http.server --bind 127.0.0.1 8000     # Windows: py -m http.server --bind 127.0.0.1 8000
```

then open `http://127.0.0.1:8000/{page}` in Chrome, Edge or Firefox (a service worker reads the
WACZ inside the browser, which is why the page must come from a local server, not a file).
Each exhibit in `exhibits.html` links to its replay.
"""
