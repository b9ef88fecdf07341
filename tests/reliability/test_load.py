"""The web server under concurrent load (a short version of `mnist-digits bench --only load`):
the real server process on 127.0.0.1, 8 clients, good and bad uploads mixed."""

from __future__ import annotations

from mnist_digits.bench import loadtest


def test_server_under_load_answers_everything_and_never_5xx(mnist_run, mnist_model):
    good, bad = loadtest.make_samples(mnist_model, 20)
    assert len(good) == 20 and all(s.digit is not None for s in good)
    result = loadtest.run_load_test(mnist_run, good, bad, requests=240, clients=8)
    assert result["server_errors_5xx"] == 0 and result["connection_errors"] == 0
    assert result["wrong_answers"] == 0, result["wrong_examples"]
    assert result["good_requests"] == 192 and result["bad_requests"] == 48
    assert sum(result["status_counts"].values()) == 240
    assert set(result["status_counts"]) <= {"200", "400", "413", "415"}
    assert result["server_rss_mb_before"] > 50 and result["server_rss_mb_after"] > 50
    assert result["latency_ms_p50"] <= result["latency_ms_p95"] <= result["latency_ms_p99"]
