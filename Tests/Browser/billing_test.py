"""Browser tests of the care manager's time, billing progress, monitoring pauses and billing page.

The same real stack as workspace_test.py (its Stack: chromium through WebDriver, the built vitalsd,
a loopback mosquitto, a fresh SQLite file), started once for this module.
"""

import os
import sqlite3
import sys
import time
import unittest
from datetime import datetime, timedelta, timezone

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workspace_test as ws  # noqa: E402
from workspace_test import DEADLINE, Wait, browser, wait_for  # noqa: E402

stack = None


def setUpModule():
    global stack
    stack = ws.start_stack(history=False)


def tearDownModule():
    if stack:
        stack.stop()


class CareManagerTime(unittest.TestCase):
    def setUp(self):
        self.driver = browser()

    def tearDown(self):
        self.driver.quit()

    def sign_in(self, username):
        ws.sign_in(self.driver, stack, username)

    def query(self, sql, *args):
        with sqlite3.connect(f"file:{stack.db_path}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(sql, args).fetchall()

    def screenshot(self, name):
        """A PNG of the whole page, for the README (docs/screenshots)."""
        d = self.driver
        os.makedirs(ws.SCREENSHOTS, exist_ok=True)
        size = d.get_window_size()
        content = d.execute_script("return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom + scrollY)")
        chrome = size["height"] - d.execute_script("return innerHeight")
        d.set_window_size(size["width"], content + chrome)
        d.save_screenshot(os.path.join(ws.SCREENSHOTS, name))
        d.set_window_size(size["width"], size["height"])

    def visibility(self):
        return self.driver.execute_script("return document.visibilityState")

    def counted(self):
        return self.driver.execute_script("return window.vitalsdTimerSeconds()")

    def test_timer_counts_visible_time_only(self):
        """After 65 s visible (and 12 s hidden in between), Stop logs an entry of 65 s ± 2 s."""
        d = self.driver
        self.sign_in("ana")
        d.get(stack.base + "/patients/p-1002")
        Wait(d).until(lambda d: d.find_element(By.ID, "timer-state").text == "running")
        start = time.monotonic()
        # 30 s visible.
        wait_for(lambda: time.monotonic() - start >= 30, "30 s of visible time", seconds=60, interval=0.2)
        d.minimize_window()
        wait_for(lambda: self.visibility() == "hidden", "the page to be hidden")
        hidden_at = time.monotonic()
        visible = hidden_at - start
        at_hide = self.counted()
        # 12 s hidden: the timer must not count them.
        wait_for(lambda: time.monotonic() - hidden_at >= 12, "12 s hidden", seconds=60, interval=0.2)
        self.assertLessEqual(abs(self.counted() - at_hide), 1, "the timer counted while the page was hidden")
        self.assertIn("paused", d.find_element(By.ID, "timer-state").get_attribute("textContent"))
        d.maximize_window()
        wait_for(lambda: self.visibility() == "visible", "the page to be visible again")
        shown_at = time.monotonic()
        wait_for(lambda: visible + time.monotonic() - shown_at >= 65, "65 s of visible time in all", seconds=90, interval=0.2)
        d.find_element(By.ID, "timer-activity").send_keys("Reviewed two weeks of blood pressure")
        Select(d.find_element(By.ID, "timer-modality")).select_by_value("audio")
        d.find_element(By.ID, "timer-stop").click()
        stopped_at = time.monotonic()
        visible += stopped_at - shown_at
        Wait(d).until(lambda d: "done=saved" in d.current_url)
        entry = d.find_element(By.CSS_SELECTOR, "#time-entries li[data-entry]")
        seconds = int(entry.get_attribute("data-seconds"))
        print(f"timer: {visible:.1f} s visible, entry {seconds} s", file=sys.stderr)
        self.assertLessEqual(abs(seconds - 65), 2)
        self.assertLessEqual(abs(seconds - visible), 2)
        self.assertIn("interactive (audio)", entry.text)
        rows = self.query("SELECT seconds, program, performed_by, interactive FROM time_entries WHERE patient_id = 'p-1002'")
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][1:], ("rpm", "ana", 1))
        self.assertLessEqual(abs(rows[0][0] - 65), 2)
        self.assertEqual(self.query("SELECT count(*) FROM audit_log WHERE action = 'time.log' AND actor = 'ana'")[0][0], 1)
        d.set_window_size(1440, 900)
        os.makedirs(ws.SCREENSHOTS, exist_ok=True)
        d.find_element(By.ID, "billing-progress").screenshot(os.path.join(ws.SCREENSHOTS, "patient-billing.png"))
        # A length longer than the page has been open is refused.
        d.get(stack.base + "/patients/p-1002")
        d.execute_script("var f = document.getElementById('timer'); f.querySelector('#timer-seconds').value = '3600';"
                         "HTMLFormElement.prototype.submit.call(f);")
        Wait(d).until(lambda d: "more time than the page has been open" in d.page_source)
        self.assertEqual(self.query("SELECT count(*) FROM time_entries WHERE patient_id = 'p-1002'")[0][0], 1)

    def test_paused_patient_reading_raises_no_task(self):
        """A paused patient's 45 mg/dL reading is stored and shown on the patient page; no task opens."""
        d = self.driver
        self.sign_in("ana")
        d.get(stack.base + "/patients/p-1003")
        until = (datetime.now(timezone.utc) + timedelta(days=3)).strftime("%Y-%m-%d")
        d.execute_script("document.getElementById('pause-until').value = arguments[0]", until)
        d.find_element(By.ID, "pause-reason").send_keys("hospital stay")
        d.find_element(By.CSS_SELECTOR, "#pause button[type=submit]").click()
        Wait(d).until(lambda d: "Monitoring paused through" in d.find_element(By.ID, "paused").text)
        before = self.query("SELECT count(*) FROM readings WHERE patient_id = 'p-1003'")[0][0]
        now = datetime.now(timezone.utc)
        stack.publish("p-1003-dev", {"type": "glucose", "value": 45, "unit": "mg/dL", "measured_at": ws.iso(now)})
        wait_for(lambda: self.query("SELECT count(*) FROM readings WHERE patient_id = 'p-1003'")[0][0] > before,
                 "the paused patient's reading to be stored")
        # The reading is in, and the rules ran in the same transaction: no task for it (nor any alert task).
        alerts = "SELECT count(*) FROM tasks WHERE patient_id = 'p-1003' AND priority <> 'routine'"
        self.assertEqual(self.query(alerts)[0][0], 0)
        d.get(stack.base + "/patients/p-1003")
        self.assertIn("Glucose 45 mg/dL", d.find_element(By.ID, "paused-readings").text)
        # The same reading for a patient who is not paused opens a critical task.
        stack.publish("p-1006-dev", {"type": "glucose", "value": 45, "unit": "mg/dL", "measured_at": ws.iso(now)})
        wait_for(lambda: self.query("SELECT count(*) FROM tasks WHERE patient_id = 'p-1006' AND priority = 'critical'")[0][0] == 1,
                 "a task for the patient who is not paused")
        self.assertEqual(self.query(alerts)[0][0], 0)
        # Resume from the CLI; the pause and its end are in the audit trail and on the page.
        stack.vitalsd("patient", "resume", "--patient", "p-1003", "--by", "setup")
        self.assertEqual(self.query(
            "SELECT group_concat(action || ':' || actor) FROM (SELECT action, actor FROM audit_log "
            "WHERE target_id = 'p-1003' AND action LIKE 'monitoring.%' ORDER BY id)")[0][0],
            "monitoring.pause:ana,monitoring.resume:setup")
        d.get(stack.base + "/patients/p-1003")
        self.assertIn("resumed", d.find_element(By.ID, "pauses").text)
        # The pause and its end are on the chart's timeline too.
        timeline = d.find_element(By.ID, "timeline").text
        self.assertIn("paused monitoring", timeline)
        self.assertIn("through " + until, timeline)
        self.assertIn("resumed monitoring", timeline)
        self.assertEqual(len(d.find_elements(By.ID, "paused")), 0)

    def test_billing_page_and_progress(self):
        """The billing page shows the month's report with the days behind each device code one click
        away and a CSV; the worklist rows carry the billing indicator and sort by billing need."""
        d = self.driver
        self.sign_in("ana")
        now = datetime.now(timezone.utc)
        stack.publish("p-1005-dev", {"measured_at": ws.iso(now - timedelta(hours=1)), "readings": [
            {"type": "systolic_bp", "value": 128, "unit": "mmHg"}, {"type": "diastolic_bp", "value": 80, "unit": "mmHg"}]})
        wait_for(lambda: self.query("SELECT count(*) FROM readings WHERE patient_id = 'p-1005'")[0][0] >= 1, "a reading")
        d.get(stack.base + "/billing")
        d.find_element(By.ID, "nav-billing")
        table = d.find_element(By.ID, "billing-report")
        self.assertIn("p-1005", table.text)
        # The device period with p-1005's day of data ends this month or the next; its evidence page lists the day.
        link = None
        for month in (now.strftime("%Y-%m"), (now + timedelta(days=31)).strftime("%Y-%m")):
            d.get(stack.base + "/billing?month=" + month)
            # The period holding the reading (which one depends on the hour: the episode began 30 days ago).
            links = [a for a in d.find_elements(By.CSS_SELECTOR, "#billing-report a.evidence")
                     if "patient=p-1005" in a.get_attribute("href") and int(a.text) >= 1]
            if links:
                link = links[0]
                break
        self.assertIsNotNone(link, "an evidence link for p-1005")
        self.screenshot("billing.png")
        link = [a for a in d.find_elements(By.CSS_SELECTOR, "#billing-report a.evidence")
                if "patient=p-1005" in a.get_attribute("href") and int(a.text) >= 1][0]
        link.click()
        Wait(d).until(lambda d: d.find_elements(By.ID, "days-count"))
        self.assertGreaterEqual(int(d.find_element(By.ID, "days-count").text), 1)
        csv = d.execute_async_script(
            "var done = arguments[arguments.length - 1];"
            "fetch('/billing/csv?month=' + arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done);",
            now.strftime("%Y-%m"))
        self.assertTrue(csv.startswith("patient_id,device_period,data_days,device_code,rpm_minutes"), csv[:200])
        # A practitioner's name that a spreadsheet would run as a formula is neutralised in the CSV and
        # shown as text on the page.
        stack.vitalsd("patient", "add", "--id", "p-2001", "--timezone", "UTC", "--program", "hypertension", "--by", "setup")
        stack.vitalsd("episode", "start", "--patient", "p-2001", "--start", now.strftime("%Y-%m-01"),
                      "--practitioner", "=HYPERLINK(\"http://x\")", "--by", "setup")
        csv = d.execute_async_script(
            "var done = arguments[arguments.length - 1];"
            "fetch('/billing/csv?month=' + arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done);",
            now.strftime("%Y-%m"))
        self.assertIn("'=HYPERLINK", csv)
        self.assertNotIn(",=HYPERLINK", csv)
        d.get(stack.base + "/billing?month=" + now.strftime("%Y-%m"))
        self.assertIn('=HYPERLINK("http://x")', d.find_element(By.ID, "billing-report").text)
        # A worklist row carries days of data and minutes; the sort option keeps the tab.
        stack.publish("p-1002-dev", {"measured_at": ws.iso(now), "readings": [
            {"type": "systolic_bp", "value": 185, "unit": "mmHg"}, {"type": "diastolic_bp", "value": 125, "unit": "mmHg"}]})
        d.get(stack.base + "/worklist?tab=team&sort=billable")
        # Read inside the wait: the live update may replace the row between finding and reading it.
        bill = Wait(d).until(lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "tr[data-task] .bill")][:1])
        self.assertRegex(bill[0], r"\d+/16 d · \d+/\d+ min")
        self.assertIn("current", d.find_element(By.CSS_SELECTOR, ".sorts a[href*=billable]").get_attribute("class"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
