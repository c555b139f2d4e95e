"""`junit.xml`: every target and every regression check as a test case, for CI test reporters."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from lab.analysis.analyze import Analysis
from lab.analysis.render import change, interval, target_text, value


def render_junit(analyses: list[Analysis], run_id: str) -> str:
    """One <testsuite> per analysis: `target.<variant>.<metric>` and `regression.<candidate>.<metric>`."""
    root = ET.Element("testsuites", name=f"ablab {run_id}")
    total = failures = 0
    for analysis in analyses:
        suite = ET.SubElement(root, "testsuite", name=f"ablab.{analysis.experiment}")
        cases = 0
        failed = 0
        for t in analysis.targets:
            bound, measured = target_text(analysis, t)
            case = ET.SubElement(
                suite, "testcase", classname=f"ablab.{analysis.experiment}.targets", name=f"{t.variant}.{t.metric}"
            )
            ET.SubElement(case, "system-out").text = f"{t.metric} {bound}: measured {measured}"
            judged = t.variant in (analysis.candidates or analysis.variants)
            if not t.met and judged:
                ET.SubElement(
                    case, "failure", message=f"target missed: {t.metric} {bound}"
                ).text = f"measured {measured} ({t.source} target)"
                failed += 1
            elif not t.met:
                ET.SubElement(case, "skipped", message=f"{t.variant} is the reference; its targets are informational")
            cases += 1
        for c in analysis.comparisons:
            metric = analysis.catalog.get(c.metric)
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"ablab.{analysis.experiment}.regressions",
                name=f"{c.candidate}.{c.metric}",
            )
            detail = (
                f"{c.baseline}: {value(metric, c.baseline_value)}, {c.candidate}: {value(metric, c.candidate_value)}, "
                f"change {change(c, c.change, metric)} {interval(c, metric)}: {c.verdict}"
            )
            ET.SubElement(case, "system-out").text = detail
            if c.verdict == "regressed":
                ET.SubElement(case, "failure", message=f"{c.metric} regressed").text = detail
                failed += 1
            cases += 1
        suite.set("tests", str(cases))
        suite.set("failures", str(failed))
        suite.set("errors", "0")
        total += cases
        failures += failed
    root.set("tests", str(total))
    root.set("failures", str(failures))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
