"""memento.py: TimeMaps (RFC 7089, link-format) parsed, the nearest memento found, and archives
asked over HTTP: a loopback stand-in speaks the Internet Archive's TimeMap format."""

from __future__ import annotations

import datetime as dt
from typing import Any

from evarchive.memento import Memento, lookup, mementos, nearest, parse_links, timemap_url

CITED = "https://news.example/2024/03/article?id=7"
TIMEMAP = (
    f'<{CITED}>; rel="original",\n'
    '<http://archive.example/timemap/link/x>; rel="self"; type="application/link-format"; '
    'from="Tue, 05 Mar 2024 09:00:00 GMT"; until="Fri, 02 Aug 2024 10:00:00 GMT",\n'
    f'<http://archive.example/web/{CITED}>; rel="timegate",\n'
    f'<http://archive.example/web/20240305090000/{CITED}>; rel="first memento"; '
    'datetime="Tue, 05 Mar 2024 09:00:00 GMT",\n'
    f'<http://archive.example/web/20240401120000/{CITED}>; rel="memento"; datetime="Mon, 01 Apr 2024 12:00:00 GMT",\n'
    f'<http://archive.example/web/20240802100000/{CITED}>; rel="last memento"; '
    'datetime="Fri, 02 Aug 2024 10:00:00 GMT"\n'
)


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


def test_a_timemap_lists_its_mementos_oldest_first() -> None:
    found = mementos(TIMEMAP, "archive.example")
    assert [(m.url.split("/web/")[1][:14], m.datetime) for m in found] == [
        ("20240305090000", utc(2024, 3, 5, 9)), ("20240401120000", utc(2024, 4, 1, 12)),
        ("20240802100000", utc(2024, 8, 2, 10))]


def test_parameters_with_commas_and_semicolons_in_quotes_are_one_value() -> None:
    links = list(parse_links('<http://a/1>; rel="memento"; title="a, b; c"; datetime="Mon, 01 Apr 2024 12:00:00 GMT", '
                             '<http://a/2>; rel=memento; datetime="Tue, 02 Apr 2024 12:00:00 GMT"'))
    assert [(target, params.get("title"), params["rel"]) for target, params in links] == [
        ("http://a/1", "a, b; c", "memento"), ("http://a/2", None, "memento")]


def test_malformed_entries_are_skipped_not_fatal() -> None:
    text = 'garbage <http://a/1>; rel="memento"; datetime="not a date", <http://a/2>; rel="memento"; ' \
           'datetime="Tue, 02 Apr 2024 12:00:00 GMT", <<>>>; , <http://a/3>; rel="original"'
    assert [m.url for m in mementos(text, "a")] == ["http://a/2"]


def test_the_nearest_memento_and_ties_go_to_the_earlier() -> None:
    found = mementos(TIMEMAP, "archive.example")
    assert nearest(found, utc(2024, 3, 20)).datetime == utc(2024, 4, 1, 12)
    assert nearest(found, utc(2030, 1, 1)).datetime == utc(2024, 8, 2, 10)
    a, b = Memento("a", utc(2024, 1, 1), "x"), Memento("b", utc(2024, 1, 3), "x")
    assert nearest([b, a], utc(2024, 1, 2)) is a
    assert nearest([], utc(2024, 1, 2)) is None


def test_timemap_urls_carry_the_cited_url_verbatim() -> None:
    assert timemap_url("https://web.archive.org/web/timemap/link/{url}", CITED) == \
        f"https://web.archive.org/web/timemap/link/{CITED}"
    assert timemap_url("http://agg.example/timemap/link/", CITED) == f"http://agg.example/timemap/link/{CITED}"


def test_lookup_asks_every_archive_and_names_the_ones_that_failed(local_server: Any) -> None:
    local_server.set_route(f"/ia/timemap/link/{CITED}", body=TIMEMAP, content_type="application/link-format")
    archives = [local_server.url("/ia/timemap/link/{url}"),
                local_server.url("/empty/timemap/link/{url}"),  # no route: 404, no mementos there
                "http://127.0.0.1:9/timemap/link/{url}"]  # nothing listens: a failure, named
    found = lookup(CITED, utc(2024, 7, 1), archives, timeout=5)
    assert found.nearest is not None and found.nearest.url.endswith(f"/20240802100000/{CITED}")
    assert found.count == 3
    assert len(found.failures) == 1 and found.failures[0].startswith("127.0.0.1: ConnectError")
    assert local_server.last_exchange(f"/ia/timemap/link/{CITED}").request.target == f"/ia/timemap/link/{CITED}"


def test_an_oversized_timemap_is_not_read_whole(local_server: Any) -> None:
    local_server.set_route(f"/big/timemap/link/{CITED}", body=TIMEMAP * 2000, content_type="application/link-format")
    found = lookup(CITED, utc(2024, 7, 1), [local_server.url("/big/timemap/link/{url}")], max_bytes=64 << 10)
    assert found.nearest is None and "larger than 65536 bytes" in found.failures[0]


def test_show_lists_public_mementos_only_when_asked(local_server: Any, tmp_path: Any,
                                                    capsys: Any) -> None:
    from evarchive import cli

    page = local_server.url("/plain")
    archive = str(tmp_path / "archive")
    assert cli.main(["capture", page, "--archive", archive, "--quiet"]) == 0
    local_server.set_route(f"/tm/timemap/link/{page}", body=TIMEMAP.replace(CITED, page),
                           content_type="application/link-format")
    local_server.clear_log()
    assert cli.main(["show", page, "--archive", archive]) == 0
    assert "public mementos" not in capsys.readouterr().out
    assert local_server.exchanges(f"/tm/timemap/link/{page}") == []
    assert cli.main(["show", page, "--archive", archive, "--mementos",
                     "--timemap", local_server.url("/tm/timemap/link/{url}")]) == 0
    assert f"public mementos: 3; nearest the latest capture: http://archive.example/web/20240802100000/{page}" \
        in capsys.readouterr().out


def test_the_archives_timemaps_setting_is_asked_by_show_and_rot(local_server: Any, tmp_path: Any,
                                                                capsys: Any) -> None:
    from evarchive import cli

    local_server.set_route("/memento/doomed", body="<html><body><p>The minister said so.</p></body></html>",
                           content_type="text/html")
    page = local_server.url("/memento/doomed")
    archive = str(tmp_path / "archive")
    assert cli.main(["capture", page, "--archive", archive, "--quiet"]) == 0
    local_server.set_route(f"/stored/timemap/link/{page}", body=TIMEMAP.replace(CITED, page),
                           content_type="application/link-format")
    assert cli.main(["settings", "timemaps", "ftp://nowhere/{url}", "--archive", archive]) == 2
    assert cli.main(["settings", "timemaps", local_server.url("/stored/timemap/link/{url}"),
                     "--archive", archive]) == 0
    capsys.readouterr()
    assert cli.main(["show", page, "--archive", archive, "--mementos"]) == 0
    assert f"public mementos: 3; nearest the latest capture: http://archive.example/web/20240802100000/{page}" \
        in capsys.readouterr().out
    local_server.set_route("/memento/doomed", status=404, body="gone")
    assert cli.main(["check", "--archive", archive, "--quiet", "--retries", "0"]) == 0  # strike 1 of 3
    capsys.readouterr()
    local_server.clear_log()
    assert cli.main(["rot", "--archive", archive, "--mementos"]) == 0
    assert f"public memento: http://archive.example/web/20240802100000/{page}" in capsys.readouterr().out
    assert len(local_server.exchanges(f"/stored/timemap/link/{page}")) == 1
    # an option given for one run still wins over the stored setting
    assert cli.main(["show", page, "--archive", archive, "--mementos", "--timemap",
                     local_server.url("/other/timemap/link/{url}")]) == 0
    assert "public mementos: 0" in capsys.readouterr().out
