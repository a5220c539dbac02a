"""Everything a bundle shows a reader is vouched for: each fact of exhibits.html, exhibits.txt,
exhibits.csv and report.html, edited by a forger who then regenerates SHA256SUMS, fails
verification with a finding that names the file, the exhibit or claim, and the fact. So does the
same fact edited in bundle.json, which the verifier checks against the custody log."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from clerk import run_verifier
from test_export import TITLE, Setup, load, page
from test_witness import KEYS, Spn2

from evarchive import cli
from evarchive.capture import CaptureSettings, capture_urls
from evarchive.check.run import check_sources, select_sources
from evarchive.check.settings import CheckSettings
from evarchive.reports import import_report
from evarchive.verify_bundle import render_csv, render_html, render_report, render_text

STAMP = "20241130120501"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, local_server: Any) -> Path:
    """The export tests' report (page A captured twice, page B over TLS, a redirect), page B
    since gone (a live check says so), and page A witnessed by the SPN2 stand-in, whose copy
    has the same bytes as our capture."""
    root = tmp_path_factory.mktemp("facts")
    setup = Setup(root, local_server)
    try:
        local_server.remove_route("/export/b")
        net = CaptureSettings(ca_file=local_server.ca_pem_path, retries=0, total_timeout=10)
        check_sources(setup.arch, select_sources(setup.arch, report=TITLE),
                      CheckSettings(network=net, commit_interval=0.0))
        url = setup.urls["a"]
        Spn2(local_server, pending_polls=0, outcome={"status": "success", "timestamp": STAMP, "original_url": url})
        local_server.set_route(f"/spn2/web/{STAMP}id_/{url}", body=page("Page A"))
        with pytest.MonkeyPatch.context() as env:
            env.setenv("EVARCHIVE_SPN2_KEYS", ":".join(KEYS))
            assert cli.main(["witness", url, "--archive", str(setup.archive_dir), "--quiet",
                             "--endpoint", local_server.url("/spn2").rstrip("/")]) == 0
        out = root / "bundle"
        assert setup.export(out, "--report", TITLE) == 0
    finally:
        local_server.set_route("/export/b", body=page("Page B"))
        setup.close()
    return out


def resum(bundle: Path) -> None:
    """Regenerate SHA256SUMS after an edit, as a forger would."""
    names = [line.split("  ", 1)[1] for line in (bundle / "SHA256SUMS").read_text().splitlines()]
    (bundle / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}\n" for n in names))


def forge(bundle: Path, name: str, old: str, new: str) -> None:
    path = bundle / name
    text = path.read_text(encoding="utf-8")
    assert old in text, (name, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8", newline="")
    resum(bundle)


def findings(bundle: Path) -> list[str]:
    result = run_verifier(bundle)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    return [line[6:] for line in result.stdout.splitlines() if line.startswith("FAIL  ")]


def exhibit(data: dict[str, Any], url: str, kind: str = "capture") -> dict[str, Any]:
    return next(e for e in data["exhibits"] if e["source_url"] == url and e["kind"] == kind)


def test_the_untouched_bundle_shows_only_vouched_facts(bundle: Path) -> None:
    result = run_verifier(bundle)
    assert result.returncode == 0, result.stdout
    assert ("ok    every fact exhibits.csv, exhibits.txt, exhibits.html and report.html show is the one the "
            "custody log vouches for") in result.stdout
    data = load(bundle)
    a = exhibit(data, data["claims"][0]["citations"][0]["url"])
    assert a["witness"]["corroboration"] == "identical"
    text = (bundle / "exhibits.txt").read_text(encoding="utf-8")
    assert f"    Independent witness: Internet Archive copy {a['witness']['memento_url']}" in text


def cases(bundle: Path) -> list[tuple[str, str, str, str]]:
    """(file, text shown, forged text, the finding that names it)."""
    data = load(bundle)
    urls = [c["url"] for claim in data["claims"] for c in claim["citations"]]
    a, b = exhibit(data, urls[0]), exhibit(data, urls[1])
    na, nb = a["exhibit"], b["exhibit"]
    claim = "The first claim rests on page A."
    ip = f"{b['server_ip']}:{b['server_port']}"
    tls = b["tls"]
    live = b["live"]["text"]
    when = b["captured_at"][:10]
    witness = f"the same payload bytes as our capture {a['witness']['capture_id']}"
    return [
        ("exhibits.html", f"<p>{claim}</p>", "<p>The first claim rests on page Z.</p>",
         "exhibits.html: claim 1, claim text"),
        ("exhibits.txt", claim, "The first claim rests on page Z.", "exhibits.txt: claim 1, claim text"),
        ("exhibits.csv", claim, "The first claim rests on page Z.", "exhibits.csv line 2: claim_text"),
        ("report.html", claim, "The first claim rests on page Z.", "report.html: claim 1, claim text"),
        ("exhibits.html", f'<a href="#exhibit-{nb}">Exhibit {nb}</a>', f'<a href="#exhibit-{na}">Exhibit {nb}</a>',
         "exhibits.html: claim 2, link href"),
        ("exhibits.txt", f"cited: {urls[1]}  ->  exhibit {nb}", f"cited: {urls[1]}  ->  exhibit {na}",
         "exhibits.txt: claim 2, citation"),
        ("exhibits.csv", f",{urls[1]},{nb},capture,", f",{urls[1]},{na},capture,", "exhibits.csv line N: exhibit"),
        ("exhibits.html", f"<th>Captured (UTC)</th><td>{b['captured_at']}", "<th>Captured (UTC)</th><td>2020-01-01",
         f"exhibits.html: exhibit {nb}, Captured (UTC)"),
        ("exhibits.txt", f"Captured (UTC): {b['captured_at']}", "Captured (UTC): 2020-01-01",
         f"exhibits.txt: exhibit {nb}, Captured (UTC)"),
        ("exhibits.csv", f",{b['captured_at']},", ",2020-01-01T00:00:00Z,", "exhibits.csv line N: captured_utc"),
        ("exhibits.html", f"<th>Server IP</th><td>{ip}", "<th>Server IP</th><td>203.0.113.9:443",
         f"exhibits.html: exhibit {nb}, Server IP"),
        ("exhibits.txt", f"Server IP: {ip}", "Server IP: 203.0.113.9:443", f"exhibits.txt: exhibit {nb}, Server IP"),
        ("exhibits.csv", f",{b['server_ip']},", ",203.0.113.9,", "exhibits.csv line N: server_ip"),
        ("exhibits.html", f"subject {html.escape(tls['subject'])}", "subject CN=bank.example",
         f"exhibits.html: exhibit {nb}, Certificate validity"),
        ("exhibits.txt", f"subject {tls['subject']}", "subject CN=bank.example",
         f"exhibits.txt: exhibit {nb}, Certificate validity"),
        ("exhibits.csv", f",{tls['not_after']},", ",2099-01-01T00:00:00Z,", "exhibits.csv line N: tls_not_after"),
        ("exhibits.html", html.escape(live), "live page unchanged", f"exhibits.html: exhibit {nb}, Live page now"),
        ("exhibits.csv", live, "live page unchanged", "exhibits.csv line N: live_now"),
        ("exhibits.txt", "Counts as support: yes", "Counts as support: NO",
         f"exhibits.txt: exhibit {na}, Counts as support"),
        ("exhibits.html", f"{b['payload_sha256']} (the body", f"{'0' * 64} (the body",
         f"exhibits.html: exhibit {nb}, SHA-256 as served"),
        ("exhibits.txt", f"SHA-256 decoded: {b['decoded_sha256']}", f"SHA-256 decoded: {'0' * 64}",
         f"exhibits.txt: exhibit {nb}, SHA-256 decoded"),
        ("exhibits.html", witness, "DIFFERS from our capture", f"exhibits.html: exhibit {na}, Independent witness"),
        ("exhibits.txt", witness, "DIFFERS from our capture", f"exhibits.txt: exhibit {na}, Independent witness"),
        ("exhibits.csv", witness, "DIFFERS from our capture", "exhibits.csv line N: independent_witness"),
        ("report.html", f'href="{urls[1]}"', 'href="https://elsewhere.example/"',
         "report.html: claim 2, Robust Link href"),
        ("report.html", f'data-originalurl="{urls[1]}"', 'data-originalurl="https://elsewhere.example/"',
         "report.html: claim 2, Robust Link data-originalurl"),
        ("report.html", f'data-versionurl="exhibits.html#exhibit-{nb}"',
         f'data-versionurl="exhibits.html#exhibit-{na}"',
         "report.html: claim 2, Robust Link data-versionurl"),
        ("report.html", f'exhibit-{nb}" data-versiondate="{when}"', f'exhibit-{nb}" data-versiondate="2001-01-01"',
         "report.html: claim 2, Robust Link data-versiondate"),
        ("report.html", f"public copy, {a['witness']['archived_at'][:10]}", "public copy, 2001-01-01",
         "report.html: claim 1, public copy text"),
    ]


CASES = [
    "html claim text", "txt claim text", "csv claim text", "report claim text",
    "html claim link", "txt claim link", "csv claim link",
    "html capture time", "txt capture time", "csv capture time",
    "html server ip", "txt server ip", "csv server ip",
    "html certificate", "txt certificate", "csv certificate",
    "html live state", "csv live state", "txt verdict", "html served hash", "txt decoded hash",
    "html witness", "txt witness", "csv witness",
    "report href", "report originalurl", "report versionurl", "report versiondate", "report public copy",
]


@pytest.mark.parametrize("case", CASES)
def test_an_edited_fact_with_a_regenerated_manifest_is_named(bundle: Path, copy: Path, case: str) -> None:
    name, old, new, finding = cases(bundle)[CASES.index(case)]
    forge(copy, name, old, new)
    found = findings(copy)
    pattern = re.escape(finding + ":").replace("line\\ N", r"line \d+")
    assert any(re.match(pattern, line) for line in found), (finding, found)


BUNDLE_JSON_CASES = ["server ip", "certificate", "capture time", "where", "relinked citation", "witness",
                     "witness memento", "witness hidden", "live text", "imported at"]


@pytest.mark.parametrize("case", BUNDLE_JSON_CASES)
def test_an_edited_fact_of_bundle_json_is_named_against_the_custody_log(bundle: Path, copy: Path,
                                                                        case: str) -> None:
    """The forger edits bundle.json and every file rendered from it alike: the rendered files then
    agree with bundle.json, and the fact itself is caught against the custody log."""
    data = load(copy)
    urls = [c["url"] for claim in data["claims"] for c in claim["citations"]]
    a, b = exhibit(data, urls[0]), exhibit(data, urls[1])
    seq_b = b["custody_seq"]
    edits = {
        "server ip": (lambda: b.update(server_ip="203.0.113.9"),
                      f"exhibit {b['exhibit']}: server IP differ from custody-log entry {seq_b}"),
        "certificate": (lambda: b["tls"].update(subject="CN=bank.example"),
                        f"exhibit {b['exhibit']}: tls certificate differ from custody-log entry {seq_b}"),
        "capture time": (lambda: b.update(captured_at="2020-01-01T00:00:00.000000Z"),
                         f"exhibit {b['exhibit']}: capture time differ from custody-log entry {seq_b}"),
        "where": (lambda: data["claims"][0].update(where="p. 9, para. 9"),
                  "claim 1: its place shown, 'p. 9, para. 9', is not where its page, paragraph and line put it"),
        "relinked citation": (lambda: data["claims"][1]["citations"][0].update(exhibits=[a["exhibit"]]),
                              f"claim 2: the exhibits listed for {urls[1]} are not the captures of the source "
                              "it cites"),
        "witness": (lambda: a["witness"].update(corroboration="differs"),
                    f"exhibit {a['exhibit']}: independent witness corroboration differ from custody-log entry "
                    f"{a['witness']['custody_seq']} and {a['witness']['compared_seq']}"),
        "witness memento": (lambda: a["witness"].update(memento_url="https://web.archive.org/web/1/x"),
                            f"exhibit {a['exhibit']}: independent witness memento_url differ from custody-log "
                            "entry"),
        "witness hidden": (lambda: a.pop("witness"),
                           f"exhibit {a['exhibit']}: the independent witness of custody-log entry "
                           f"{a['witness']['custody_seq']} is not shown"),
        "live text": (lambda: [b["live"].update(text="live page unchanged"),
                               next(s for s in data["sources"] if s["source_id"] == b["source_id"])["live"].update(
                                   text="live page unchanged")],
                      f"source {b['source_url']}: the live state shown is not what check"),
        "imported at": (lambda: data["report"].update(imported_at="2000-01-01T00:00:00.000000Z"),
                        "report: imported_at differ from custody-log entry"),
    }
    edit, finding = edits[case]
    edit()
    (copy / "bundle.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for name, render in (("exhibits.csv", render_csv), ("exhibits.txt", render_text),
                         ("exhibits.html", render_html), ("report.html", render_report)):
        (copy / name).write_text(render(data).lstrip("\ufeff"), encoding="utf-8", newline="")
    resum(copy)
    found = findings(copy)
    assert any(line.startswith(finding) for line in found), (finding, found)
    rendering = re.compile(r"(exhibits\.(csv|txt|html)|report\.html)( line \d+)?: .* shows ")
    assert not any(rendering.match(line) for line in found), found  # the files agree with bundle.json


def test_why_a_citation_has_no_exhibit_is_its_vouched_failed_attempt(tmp_path: Path, local_server: Any) -> None:
    """A failed capture's reason (connection refused) travels with its custody entry: a forger who
    turns it into another reason, in bundle.json and every index alike, is named."""
    setup = Setup(tmp_path, local_server)
    refused = "http://127.0.0.1:9/refused"  # the discard port: nothing listens on loopback
    try:
        with open(setup.report, "a", encoding="utf-8") as fh:
            fh.write(f"\nA claim whose page could not be reached.\n\n{refused}\n")
        import_report(setup.arch.db, setup.report, TITLE)
        [failed] = capture_urls(setup.arch, [refused], setup.settings)
        assert failed.status == "failed"
        out = tmp_path / "bundle"
        assert setup.export(out, "--report", TITLE) == 1
    finally:
        setup.close()
    assert run_verifier(out).returncode == 0
    data = load(out)
    [cited] = data["claims"][3]["citations"]
    cited["why_no_exhibit"] = "never captured"
    (out / "bundle.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for name, render in (("exhibits.csv", render_csv), ("exhibits.txt", render_text),
                         ("exhibits.html", render_html), ("report.html", render_report)):
        (out / name).write_text(render(data).lstrip("\ufeff"), encoding="utf-8", newline="")
    resum(out)
    assert (f"claim 4: why {refused} has no exhibit is not what the custody log recorded of its latest capture"
            in findings(out))
