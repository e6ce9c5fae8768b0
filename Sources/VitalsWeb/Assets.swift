import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// The stylesheet, the script and the icon of the workspace, compiled into the binary and served by
/// vitalsd itself (no CDN, no external font: these pages carry PHI). Public: they hold no data.
enum Assets {
    struct Asset: Sendable {
        var contentType: String
        var body: String
        /// A strong validator: the SHA-256 of the body.
        var etag: String
    }

    static let files: [String: Asset] = [
        "app.css": asset("text/css; charset=utf-8", css),
        "app.js": asset("text/javascript; charset=utf-8", script),
        "icon.svg": asset("image/svg+xml", icon),
    ]

    private static func asset(_ type: String, _ body: String) -> Asset {
        let digest = SHA256.hash(data: Data(body.utf8)).prefix(12).map { String(format: "%02x", $0) }.joined()
        return Asset(contentType: type, body: body, etag: "\"\(digest)\"")
    }

    static func addRoutes(to router: Router<WorkspaceRequestContext>) {
        router.get("static/:file") { request, context -> Response in
            guard let name = context.parameters.get("file"), let asset = files[name] else { throw HTTPError(.notFound) }
            var headers: HTTPFields = [.contentType: asset.contentType, .eTag: asset.etag, .cacheControl: "no-cache"]
            if request.headers[.ifNoneMatch] == asset.etag {
                headers[.contentType] = nil
                return Response(status: .notModified, headers: headers)
            }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: asset.body)))
        }
    }

    static let icon = """
        <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1d4ed8"/><polyline points="4,18 10,18 13,9 18,25 21,15 28,15" fill="none" stroke="#fff" stroke-width="3" stroke-linejoin="round" stroke-linecap="round"/></svg>
        """

    static let css = """
        :root { --crit: #b42318; --crit-bg: #fef3f2; --warn: #b54708; --warn-bg: #fffaeb; --rout: #475467; --rout-bg: #f2f4f7;
          --ink: #101828; --sub: #475467; --line: #e4e7ec; --bg: #f5f6f8; --accent: #1d4ed8; }
        * { box-sizing: border-box; }
        html { font-size: 15px; }
        body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
          color: var(--ink); background: var(--bg); line-height: 1.4; }
        a { color: var(--accent); text-decoration: none; }
        a:hover { text-decoration: underline; }
        main { padding: 1rem 1.5rem 3rem; max-width: 1400px; margin: 0 auto; }
        h1 { font-size: 1.45rem; margin: .2rem 0 .6rem; }
        h2 { font-size: 1.1rem; margin: 1.2rem 0 .5rem; }
        h3 { font-size: 1rem; margin: 0 0 .5rem; }
        .sub { color: var(--sub); font-size: .85rem; }
        .fine { color: var(--sub); font-size: .85rem; }
        kbd { border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 3px; padding: 0 .3em; font-size: .8rem; background: #fff; }

        header.top { display: flex; align-items: center; gap: 1.5rem; padding: .55rem 1.5rem; background: #0f172a; color: #e2e8f0; }
        header.top a { color: #e2e8f0; }
        header.top .brand { font-weight: 700; font-size: 1.1rem; letter-spacing: .02em; color: #fff; }
        header.top nav.main a { margin-right: 1rem; padding: .2rem 0; }
        header.top nav.main a[aria-current] { border-bottom: 2px solid #93c5fd; }
        header.top .who { margin-left: auto; display: flex; align-items: center; gap: .6rem; }
        header.top .role { color: #94a3b8; font-size: .85rem; }
        form.inline { display: inline-flex; align-items: flex-end; gap: .5rem; margin: 0 .8rem .6rem 0; }
        header.top form.inline { margin: 0; }
        button.link { background: none; border: 1px solid #475569; color: #e2e8f0; border-radius: 4px; padding: .2rem .6rem; cursor: pointer; font: inherit; }

        .tabs { display: flex; align-items: flex-end; gap: .25rem; border-bottom: 1px solid var(--line); margin-bottom: .6rem; }
        .tab { padding: .45rem .9rem; border: 1px solid transparent; border-bottom: none; border-radius: 6px 6px 0 0; color: var(--sub); }
        .tab.current { background: #fff; border-color: var(--line); color: var(--ink); font-weight: 600; margin-bottom: -1px; }
        .tab .count { display: inline-block; min-width: 1.5em; padding: 0 .4em; border-radius: 9px; background: var(--rout-bg); color: var(--ink);
          font-size: .8rem; text-align: center; font-weight: 600; }
        .critical-summary { margin-left: auto; padding: .3rem .2rem; color: var(--sub); font-size: .9rem; }
        .critical-summary.alarm { color: var(--crit); font-weight: 700; }

        table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
        th, td { padding: .45rem .6rem; text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); }
        th { font-size: .78rem; text-transform: uppercase; letter-spacing: .04em; color: var(--sub); background: #f9fafb; font-weight: 600; }
        td.num, th.num { text-align: right; }
        td.value { font-variant-numeric: tabular-nums; font-weight: 600; white-space: nowrap; }
        td.value .sub { font-weight: 400; }
        td.patient a { font-weight: 600; }
        td.spark { padding-top: .35rem; }
        td.empty { text-align: center; color: var(--sub); padding: 2rem; }
        tr.row { border-left: 4px solid transparent; }
        tr.p-critical { border-left-color: var(--crit); }
        tr.p-warning { border-left-color: #f79009; }
        tr.p-routine { border-left-color: #98a2b3; }
        tr.row:hover, tr.row.selected { background: #eff4ff; }
        tr.row.selected { outline: 2px solid var(--accent); outline-offset: -2px; }
        tr.row.fresh { animation: fresh 3s ease-out; }
        @keyframes fresh { from { background: #fef0c7; } to { background: transparent; } }
        td.escalation, td.nowrap { white-space: nowrap; }
        td.escalation.due, tr.escalated td.escalation { color: var(--crit); font-weight: 600; }

        .prio { display: inline-block; padding: .1rem .5rem; border-radius: 4px; font-size: .8rem; font-weight: 700; }
        .prio-critical { background: var(--crit); color: #fff; }
        .prio-warning { background: #fdb022; color: #3d2800; }
        .prio-routine { background: var(--rout-bg); color: var(--rout); }
        .badge { display: inline-block; margin-left: .25rem; padding: 0 .45rem; border-radius: 9px; font-size: .75rem; font-weight: 600;
          cursor: help; white-space: nowrap; }
        .badge-stale { background: #eaecf0; color: #344054; }
        .badge-late { background: #f4ebff; color: #6941c6; }
        .badge-device { background: #fff4ed; color: #b93815; }
        .badge-escalated { background: var(--crit); color: #fff; }

        svg.sparkline { display: block; overflow: visible; }
        svg.sparkline .trace { fill: none; stroke: #344054; stroke-width: 1.3; stroke-linejoin: round; }
        svg.sparkline .dot { fill: #344054; }
        svg.sparkline .limit { stroke: var(--crit); stroke-width: 1; stroke-dasharray: 3 2; }
        svg.sparkline .last { fill: var(--crit); }

        /* The patient chart (Chart.swift): bands beyond the limits, the readings, task markers. */
        section.charts, section.logbook, section.devices, section.thresholds, section.history#timeline { margin-top: 1.4rem; }
        nav.windows { margin: .3rem 0 .6rem; }
        figure.vital-chart { margin: 0 0 1.2rem; }
        figure.vital-chart figcaption { font-weight: 600; margin-bottom: .2rem; }
        svg.chart { display: block; width: 100%; max-width: 1000px; height: auto; background: #fff; }
        svg.chart .band-warning { fill: #fef0c7; opacity: .7; }
        svg.chart .band-critical { fill: var(--crit-bg); opacity: .9; }
        svg.chart .limit { stroke-width: 1; stroke-dasharray: 4 3; }
        svg.chart .limit-warning { stroke: #f79009; }
        svg.chart .limit-critical { stroke: var(--crit); }
        svg.chart .limit-other { stroke-dasharray: 1 3; }
        svg.chart .grid { stroke: #eaecf0; stroke-width: 1; }
        svg.chart .tick { font-size: 10px; fill: #667085; }
        svg.chart .frame { fill: none; stroke: #d0d5dd; }
        svg.chart .trace { fill: none; stroke: #344054; stroke-width: 1.2; stroke-linejoin: round; }
        svg.chart .trace-diastolic_bp { stroke: #1d4ed8; }
        svg.chart .dot { fill: #344054; }
        svg.chart .dot-diastolic_bp { fill: #1d4ed8; }
        svg.chart .marker { fill: none; stroke: var(--crit); stroke-width: 1.6; }
        svg.chart .extreme.min { fill: none; stroke: #6941c6; stroke-width: 1.4; }
        table.stats { font-size: .85rem; border-collapse: collapse; margin-top: .3rem; }
        table.stats th, table.stats td { padding: .15rem .6rem; text-align: left; }
        table.stats .num { text-align: right; }
        table.logbook tr.device-event td { color: #b93815; }
        table.limits tr.own td { font-weight: 600; }

        .pager { display: flex; gap: 1rem; justify-content: center; padding: .8rem; color: var(--sub); }
        .flash { padding: .6rem .9rem; border-radius: 6px; margin: .5rem 0 1rem; }
        .flash.ok { background: #ecfdf3; color: #05603a; border: 1px solid #abefc6; }
        .flash.error { background: var(--crit-bg); color: var(--crit); border: 1px solid #fecdca; font-weight: 600; }
        .crumbs { margin: 0 0 .5rem; }

        article.task { background: #fff; border: 1px solid var(--line); border-left: 6px solid var(--rout); border-radius: 6px; padding: 1rem 1.4rem;
          display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); column-gap: 2rem; }
        article.task.p-critical { border-left-color: var(--crit); }
        article.task.p-warning { border-left-color: #f79009; }
        .task-head { grid-column: 1 / -1; display: flex; align-items: center; gap: .7rem; flex-wrap: wrap; }
        .task-head h1 { margin: 0; }
        .status { padding: .1rem .5rem; border-radius: 4px; background: var(--rout-bg); font-weight: 600; font-size: .85rem; }
        .status-open { background: #fef0c7; color: #93370d; }
        .status-acknowledged { background: #eff8ff; color: #175cd3; }
        .status-resolved { background: #ecfdf3; color: #05603a; }
        .patient-card { grid-column: 1 / -1; border-bottom: 1px solid var(--line); padding-bottom: .6rem; }
        .patient-card h2 { margin: .8rem 0 .3rem; }
        dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: .5rem 0; }
        dt { color: var(--sub); }
        dd { margin: 0; }
        dl.inline { display: flex; flex-wrap: wrap; gap: .2rem 1.4rem; }
        dl.inline dt::after { content: ":"; }
        dl.inline dt { margin-right: -1rem; }
        .latest .big { font-size: 2rem; font-weight: 700; font-variant-numeric: tabular-nums; }
        .latest svg.sparkline { margin: .6rem 0; }
        section.actions { grid-column: 2; grid-row: 3 / span 3; }
        section.history, section.time-log { grid-column: 1; }
        form.block { border: 1px solid var(--line); border-radius: 6px; padding: .7rem .9rem; margin: .7rem 0; background: #fcfcfd; }
        form.block label, form.inline label { display: inline-flex; flex-direction: column; gap: .15rem; margin: 0 .8rem .6rem 0;
          font-size: .85rem; color: var(--sub); }
        form.block label.wide { display: flex; }
        form.block label.check { flex-direction: row; align-items: center; gap: .4rem; }
        input, select, textarea { font: inherit; color: var(--ink); padding: .35rem .45rem; border: 1px solid #d0d5dd; border-radius: 5px; background: #fff; }
        textarea { width: 100%; }
        fieldset.time { border: 1px dashed #d0d5dd; border-radius: 5px; margin: 0 0 .7rem; padding: .4rem .7rem 0; }
        fieldset.time legend { font-size: .8rem; color: var(--sub); }
        fieldset.time input[type=number] { width: 6rem; }
        button { font: inherit; padding: .4rem .9rem; border-radius: 5px; border: 1px solid #d0d5dd; background: #fff; cursor: pointer; }
        button.primary { background: var(--accent); border-color: var(--accent); color: #fff; font-weight: 600; }
        button:hover { filter: brightness(.95); }
        ol.timeline { list-style: none; padding: 0; margin: 0; }
        ol.timeline li { padding: .4rem 0; border-bottom: 1px solid var(--line); }
        ol.timeline time { color: var(--sub); font-size: .85rem; margin-right: .4rem; }
        ol.timeline .who { font-weight: 600; }
        ol.timeline blockquote { margin: .3rem 0 0 0; padding: .3rem .6rem; background: #f9fafb; border-left: 3px solid #d0d5dd; white-space: pre-wrap; }
        ol.timeline li.h-escalated .what { color: var(--crit); font-weight: 600; }

        section.signin { max-width: 22rem; margin: 4rem auto; background: #fff; padding: 1.6rem 1.8rem; border: 1px solid var(--line); border-radius: 8px; }
        section.signin h1 { margin: 0; }
        section.signin .lede { margin: 0 0 1rem; color: var(--sub); }
        section.signin label { display: flex; flex-direction: column; gap: .2rem; margin-bottom: .8rem; font-size: .9rem; color: var(--sub); }
        section.signin button { width: 100%; }
        .patient-page, .error-page { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 1rem 1.4rem; }
        ul.tasks { padding-left: 1.1rem; }
        ul.tasks li { margin: .3rem 0; }
        .bill { font-size: .75rem; color: var(--sub); white-space: nowrap; cursor: help; }
        .bill.day-risk, .bill.day-lost { color: var(--crit); font-weight: 600; }
        .sorts { margin: 0 0 .4rem; }
        .sorts a.current { font-weight: 700; color: var(--ink); }
        section.billing .meters { display: flex; flex-wrap: wrap; gap: 1rem; }
        section.billing .meter { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .9rem; min-width: 14rem; background: #fcfcfd; }
        section.billing .meter .label { color: var(--sub); font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
        section.billing .meter .big { font-size: 1.6rem; font-weight: 700; font-variant-numeric: tabular-nums; }
        section.billing .meter progress { width: 100%; }
        form.timer .clock { font-variant-numeric: tabular-nums; font-size: 1.3rem; margin-left: .5rem; }
        ul.time-entries, ul.pauses { padding-left: 1.1rem; }
        .flash.paused { background: #eff8ff; color: #175cd3; border: 1px solid #b2ddff; }
        ul.time-entries time { color: var(--sub); font-size: .85rem; }
        section.billing .meter.state-ok { border-color: #abefc6; }
        section.billing .meter.state-risk, section.billing .meter.state-lost { border-color: #fecdca; background: var(--crit-bg); }
        @media (max-width: 900px) {
          article.task { display: block; }
          table.worklist th:nth-child(5), table.worklist td:nth-child(5), table.worklist th:nth-child(10), table.worklist td:nth-child(10) { display: none; }
        }
        """

    static let script = """
        // The workspace's only script: live worklist rows over server-sent events, the critical count in the
        // tab title, keyboard shortcuts, and the patient page's timer. Every action also works without it, as a plain form post.
        (function () {
          'use strict';
          var body = document.body;
          var baseTitle = body.dataset.title || document.title;
          var list = document.getElementById('worklist');

          function setTitle(count) {
            document.title = (count > 0 ? '(' + count + ') ' : '') + baseTitle;
          }
          function signIn() {
            location.href = '/signin?ended=idle&next=' + encodeURIComponent(location.pathname + location.search);
          }
          if (list) { setTitle(Number(list.dataset.critical) || 0); }

          // Live updates: the server says when tasks changed; the page fetches its rows again.
          if (body.dataset.live && window.EventSource) {
            var cursor = list ? list.dataset.cursor : '';
            var source = new EventSource('/events' + (cursor ? '?since=' + encodeURIComponent(cursor) : ''));
            var busy = false, again = false;
            var refresh = function () {
              if (!list) {
                var banner = document.getElementById('changed');
                if (!banner) {
                  banner = document.createElement('p');
                  banner.id = 'changed';
                  banner.className = 'flash ok';
                  banner.setAttribute('role', 'status');
                  banner.innerHTML = 'This task or another may have changed. <a href="">Reload</a> to see the latest.';
                  document.querySelector('main').insertBefore(banner, document.querySelector('main').firstChild);
                }
                return;
              }
              if (busy) { again = true; return; }
              busy = true;
              var before = {};
              list.querySelectorAll('tr[data-task]').forEach(function (row) { before[row.dataset.task + '.' + row.dataset.version] = true; });
              var selected = list.querySelector('tr.selected');
              var selectedID = selected ? selected.dataset.task : null;
              fetch('/worklist/rows' + location.search, { credentials: 'same-origin' })
                .then(function (response) {
                  if (response.status === 401) { signIn(); throw new Error('signed out'); }
                  return response.text();
                })
                .then(function (html) {
                  var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('worklist');
                  if (!fresh) { return; }
                  list.innerHTML = fresh.innerHTML;
                  list.dataset.critical = fresh.dataset.critical;
                  list.dataset.cursor = fresh.dataset.cursor;
                  setTitle(Number(fresh.dataset.critical) || 0);
                  list.querySelectorAll('tr[data-task]').forEach(function (row) {
                    if (!before[row.dataset.task + '.' + row.dataset.version]) { row.classList.add('fresh'); }
                    if (row.dataset.task === selectedID) { row.classList.add('selected'); }
                  });
                })
                .catch(function () {})
                .then(function () {
                  busy = false;
                  if (again) { again = false; refresh(); }
                });
            };
            source.addEventListener('tasks', refresh);
            source.addEventListener('signed-out', function () { source.close(); signIn(); });
          }

          // Keys on the worklist: 1-5 tabs, j/k move, Enter or o opens.
          document.addEventListener('keydown', function (event) {
            if (!list || event.ctrlKey || event.metaKey || event.altKey) { return; }
            var target = event.target;
            if (target && /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(target.tagName)) { return; }
            var tab = list.querySelector('.tab[data-key="' + event.key + '"]');
            if (tab) { location.href = tab.href; return; }
            var rows = Array.prototype.slice.call(list.querySelectorAll('tr[data-task]'));
            if (!rows.length) { return; }
            var current = list.querySelector('tr.selected');
            var index = rows.indexOf(current);
            if (event.key === 'j' || event.key === 'k') {
              if (current) { current.classList.remove('selected'); }
              index = event.key === 'j' ? Math.min(rows.length - 1, index + 1) : Math.max(0, index - 1);
              rows[index].classList.add('selected');
              rows[index].scrollIntoView({ block: 'nearest' });
            } else if ((event.key === 'Enter' || event.key === 'o') && current) {
              location.href = current.querySelector('a.open-task').href;
            }
          });

          // The patient page's timer: counts while the page is visible (Page Visibility API), stops
          // counting while it is hidden or frozen, and Stop posts the seconds counted with the form.
          var timer = document.getElementById('timer');
          if (timer) {
            var clock = document.getElementById('timer-clock');
            var state = document.getElementById('timer-state');
            var field = document.getElementById('timer-seconds');
            var counted = 0;
            var since = null;
            var now = function () { return performance.now(); };
            var seconds = function () { return Math.round((counted + (since === null ? 0 : now() - since)) / 1000); };
            var show = function () {
              var s = seconds();
              clock.textContent = Math.floor(s / 60) + ':' + ('0' + (s % 60)).slice(-2);
              clock.dataset.seconds = String(s);
              state.textContent = since === null ? 'paused while the page is hidden' : 'running';
              field.value = String(s);
            };
            var run = function () { if (since === null) { since = now(); } show(); };
            var halt = function () { if (since !== null) { counted += now() - since; since = null; } show(); };
            var follow = function () { if (document.visibilityState === 'visible') { run(); } else { halt(); } };
            document.addEventListener('visibilitychange', follow);
            document.addEventListener('freeze', halt);
            document.addEventListener('resume', follow);
            timer.addEventListener('submit', function () { halt(); });
            // Read by the browser tests: the seconds counted so far, without waiting for the next tick.
            window.vitalsdTimerSeconds = seconds;
            follow();
            setInterval(show, 1000);
          }
        })();
        """
}
