"""One exporter keeping thousands of ping checks on schedule."""

from __future__ import annotations


from conftest import wait_until, write_config


def test_two_thousand_ping_checks_all_report_within_one_round(start_exporter, tmp_path):
    targets = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(2000)]
    checks = "\n".join(f"      - {{name: t{i}, ping: {{host: {address}, count: 2, interval: 200ms, timeout: 1s}}}}"
                       for i, address in enumerate(targets))
    config = write_config(tmp_path / "fleet.yml",
                          "defaults: {interval: 5s, timeout: 3s}\nsites:\n  - id: fleet\n    checks:\n" + checks + "\n")
    exporter = start_exporter(config, wait_ready=False)

    def all_reported():
        text = exporter.metrics()
        lines = [line for line in text.splitlines() if line.startswith("sitewatch_check_success{")]
        return lines if len(lines) == 2000 else None

    lines = wait_until(all_reported, 20, interval=0.5, what="all 2000 ping checks to report")
    assert all(line.endswith(" 1.0") for line in lines), [line for line in lines if not line.endswith(" 1.0")][:3]
