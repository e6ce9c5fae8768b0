"""Browser tests of the patient chart, on the real CGM sample (Samples/cgm).

Subject 4's 3,664 Dexcom G4 readings (13 days, 50–400 mg/dL) are moved in time so that the newest is an
hour old, and replayed through the broker and the daemon. Then, in Debian's chromium: the 1-week and
3-month glucose charts show the limits in force and plot the window's lowest reading where the SVG says;
a clinician changes a limit and the band moves; a care manager's chart and task views are in
`vitalsd audit list --access`. Uses the stack and helpers of workspace_test.py.

Run by scripts/browser-test. Environment: as workspace_test.py.
"""

import csv
import os
import re
import unittest
from datetime import datetime, timedelta, timezone

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

import workspace_test as wt

PATIENT = "subject-4"
DEVICE = "cgm-subject-4"
CLINICIAN = ("dr.ng", "Dr. Ng", "clinician", "correct horse battery 3")

stack = None
# (measured_at UTC, mg/dL) of the replayed readings, oldest first.
readings = []


def setUpModule():
    global stack
    if not os.access(wt.VITALSD, os.X_OK):
        raise unittest.SkipTest(f"{wt.VITALSD} is not built: run swift build first")
    wt.USERS[CLINICIAN[0]] = CLINICIAN[1:]
    stack = wt.Stack()
    wt.stack = stack  # the helpers of workspace_test.py use it
    try:
        stack.start_broker()
        stack.write_config()
        stack.enroll()
        stack.vitalsd("import", os.path.join(wt.ROOT, "Samples", "cgm", "enrollment.csv"), "--by", "setup")
        stack.vitalsd("patient", "assign", "--patient", PATIENT, "--care-manager", "ana", "--by", "setup")
        stack.start_daemon()
        replay_cgm()
    except BaseException:
        stack.stop()
        raise


def replay_cgm():
    """Subject 4's readings (local standard time, UTC-05:00), shifted so that the newest is an hour old."""
    with open(os.path.join(wt.ROOT, "Samples", "cgm", "readings.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["device_id"] == DEVICE]
    est = timezone(timedelta(hours=-5))
    times = [datetime.strptime(r["measured_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=est) for r in rows]
    shift = datetime.now(timezone.utc) - timedelta(hours=1) - max(times)
    lines = ["device_id,measured_at,type,value,unit"]
    for r, t in zip(rows, times):
        at = t + shift
        readings.append((at, float(r["value"])))
        lines.append(f"{DEVICE},{wt.iso(at)},glucose,{r['value']},mg/dL")
    path = os.path.join(stack.dir, "cgm.csv")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    stack.vitalsd("replay", path)
    wt.wait_for(lambda: stack.count("SELECT count(*) FROM readings WHERE device_id = ?", DEVICE) >= len(rows),
                "the CGM readings to be stored", seconds=120)


def tearDownModule():
    if stack:
        stack.stop()


def number(text):
    return float(text)


class PatientChart(unittest.TestCase):
    # The browser helpers of workspace_test.py's test case (its tests are not run here).
    setUp = wt.CareManagerShift.setUp
    tearDown = wt.CareManagerShift.tearDown
    open_browser = wt.CareManagerShift.open_browser
    sign_in = wt.CareManagerShift.sign_in
    wait_text = wt.CareManagerShift.wait_text

    def screenshot_top(self, d, css, name):
        """A PNG of the page down to the bottom of `css`, for the README."""
        os.makedirs(wt.SCREENSHOTS, exist_ok=True)
        bottom = d.execute_script(
            f"return Math.ceil(document.querySelector('{css}').getBoundingClientRect().bottom + scrollY + 12)")
        d.set_window_size(1440, bottom + d.get_window_size()["height"] - d.execute_script("return innerHeight"))
        d.save_screenshot(os.path.join(wt.SCREENSHOTS, name))
        d.set_window_size(1440, 900)

    def chart(self, d):
        return d.find_element(By.CSS_SELECTOR, "#chart-glucose svg.chart")

    def plotted_ys(self, svg):
        ys = []
        for points in (p.get_attribute("points") for p in svg.find_elements(By.CSS_SELECTOR, "polyline.trace")):
            ys += [float(xy.split(",")[1]) for xy in points.split()]
        ys += [float(c.get_attribute("cy")) for c in svg.find_elements(By.CSS_SELECTOR, "circle.dot")]
        return ys

    def check_window(self, d, window, days):
        """The window's chart of glucose against the replayed data; returns the window's reading count."""
        d.get(f"{stack.base}/patients/{PATIENT}?window={window}")
        svg = self.chart(d)
        start, end = int(svg.get_attribute("data-start")), int(svg.get_attribute("data-end"))
        self.assertEqual(end - start, days * 86_400_000 + 1000)
        in_window = [v for t, v in readings if start <= int(t.timestamp() * 1000) < end]
        lowest = min(in_window)
        # The plotted minimum is the data's, and the lowest point drawn is at the y the chart announces.
        self.assertEqual(number(svg.get_attribute("data-min")), lowest, window)
        self.assertEqual(max(self.plotted_ys(svg)), float(svg.get_attribute("data-min-y")), window)
        self.assertEqual(number(d.find_element(By.CSS_SELECTOR, "#chart-glucose td.stat-min").text), lowest, window)
        self.assertEqual(int(d.find_element(By.CSS_SELECTOR, "#chart-glucose tbody td.num").text), len(in_window), window)
        # The limits in force (ADA: < 54 critical, < 70 warning; ≥ 250 warning, ≥ 400 critical) as bands.
        bands = {(b.get_attribute("data-level"), b.get_attribute("data-direction")): number(b.get_attribute("data-limit"))
                 for b in svg.find_elements(By.CSS_SELECTOR, "rect.band")}
        self.assertEqual(bands[("critical", "low")], 54)
        self.assertEqual(bands[("warning", "low")], 70)
        self.assertEqual(bands[("warning", "high")], 250)
        self.assertEqual(d.find_element(By.ID, f"window-{window}").get_attribute("aria-current"), "page")
        return len(in_window)

    def test_cgm_chart_windows(self):
        """1 week and 3 months of real CGM data: limits, the lowest reading plotted, logbook and CSV."""
        ana = self.open_browser()
        self.sign_in(ana, "ana")
        week = self.check_window(ana, "1w", 7)
        self.assertGreater(week, 1500)
        self.screenshot_top(ana, "#charts", "chart.png")
        everything = self.check_window(ana, "3m", 91)
        self.assertEqual(everything, len(readings))
        # The logbook pages the window; the CSV holds every reading of it.
        self.assertIn(f"{everything} readings", ana.find_element(By.CSS_SELECTOR, "#logbook h2").text)
        self.assertLessEqual(len(ana.find_elements(By.CSS_SELECTOR, "table.logbook tbody tr")), 100)
        # The oldest page: readings received (replayed) more than a day after they were measured.
        pages = (everything + 99) // 100
        ana.get(f"{stack.base}/patients/{PATIENT}?window=3m&log={pages}")
        self.assertIn(f"Page {pages} of {pages}", ana.find_element(By.CSS_SELECTOR, "#logbook .pager").text)
        self.assertEqual(len(ana.find_elements(By.CSS_SELECTOR, "table.logbook tbody tr")), everything - (pages - 1) * 100)
        self.assertIn("late", ana.find_element(By.CSS_SELECTOR, "table.logbook tbody tr").text)
        text = ana.execute_script(
            "return fetch(document.getElementById('readings-csv').getAttribute('href')).then(r => r.text())")
        lines = [line for line in text.splitlines() if line]
        self.assertTrue(lines[0].startswith("measured_at_local,measured_at_utc,type,value,unit,canonical_value"))
        self.assertEqual(len(lines) - 1, everything)
        self.assertEqual(min(float(line.split(",")[3]) for line in lines[1:]), min(v for _, v in readings))

    def test_clinician_moves_a_band(self):
        """A clinician sets the warning low to 80 mg/dL with a reason: the band moves; a care manager cannot."""
        ana = self.open_browser()
        self.sign_in(ana, "ana")
        ana.get(f"{stack.base}/patients/{PATIENT}?window=1w")
        self.assertFalse(ana.find_elements(By.ID, "change-limit"))

        ng = self.open_browser()
        self.sign_in(ng, "dr.ng")
        ng.get(f"{stack.base}/patients/{PATIENT}?window=1w")
        band = "rect.band[data-level='warning'][data-direction='low']"
        before = float(self.chart(ng).find_element(By.CSS_SELECTOR, band).get_attribute("data-y"))
        form = ng.find_element(By.ID, "change-limit")
        Select(form.find_element(By.NAME, "slot")).select_by_value("glucose|warning|low")
        form.find_element(By.NAME, "value").send_keys("80")
        form.find_element(By.NAME, "reason").send_keys("Frequent lows: earlier warning, per Dr. Ng")
        form.find_element(By.CSS_SELECTOR, "button[value=set]").click()
        self.wait_text(ng, "#flash", "Changed")
        moved = self.chart(ng).find_element(By.CSS_SELECTOR, band)
        self.assertEqual(number(moved.get_attribute("data-limit")), 80)
        self.assertLess(float(moved.get_attribute("data-y")), before)  # higher on the page
        self.assertIn("Frequent lows", ng.find_element(By.ID, "timeline").text)
        self.assertEqual(stack.count(
            "SELECT count(*) FROM audit_log WHERE actor = 'dr.ng' AND action = 'threshold.set' AND target_id = ? "
            "AND detail LIKE '%-> 80 mg/dL; reason: Frequent lows%'", PATIENT), 1)

    def test_views_in_access_log(self):
        """A care manager's chart and task views appear in `vitalsd audit list --access`."""
        since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        ana = self.open_browser()
        self.sign_in(ana, "ana")
        ana.get(f"{stack.base}/patients/{PATIENT}?window=2w")
        task = ana.find_element(By.CSS_SELECTOR, "ul.tasks a").get_attribute("href")
        task_id = re.search(r"/tasks/(\d+)", task).group(1)
        ana.get(task)
        out = stack.vitalsd("audit", "list", "--access", "--actor", "ana", "--patient", PATIENT, "--since", since,
                            "--format", "csv")
        rows = list(csv.reader(out.splitlines()))
        entries = [(r[3], r[4]) for r in rows[1:]]
        self.assertIn(("chart.viewed", f"patient {PATIENT}"), entries)
        self.assertIn(("task.viewed", f"task {task_id}"), entries)


if __name__ == "__main__":
    wt.main()
