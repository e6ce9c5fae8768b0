// The workspace's Mustache templates, compiled into the binary so that an installed vitalsd finds
// them without a resources folder. `{{name}}` escapes & < > " ' (swift-mustache's HTML content type);
// the only unescaped values (`{{{…}}}`) are SVG drawn by ``Sparkline`` and ``Chart`` from numbers and escaped text.

enum Templates {
    static let all: [String: String] = [
        "head": head, "foot": foot, "signin": signIn, "worklist": worklist, "worklist-body": worklistBody,
        "worklist-fragment": worklistFragment,
        "task": task, "time-fields": timeFields, "patient": patient, "patients": patients, "error": error,
        "patient-charts": patientCharts, "patient-logbook": patientLogbook, "patient-devices": patientDevices,
        "patient-timeline": patientTimeline, "patient-thresholds": patientThresholds,
        "patient-billing": patientBilling, "billing": billing, "billing-days": billingDays,
    ]

    static let head = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}}</title>
        <link rel="stylesheet" href="/static/app.css">
        <link rel="icon" href="/static/icon.svg" type="image/svg+xml">
        <script src="/static/app.js" defer></script>
        </head>
        <body data-title="{{title}}"{{#live}} data-live="{{live}}"{{/live}}>
        {{#user}}
        <header class="top">
          <a class="brand" href="/worklist">vitalsd</a>
          <nav class="main">
            <a href="/worklist"{{#navWorklist}} aria-current="page"{{/navWorklist}}>Worklist</a>
            <a href="/patients"{{#navPatients}} aria-current="page"{{/navPatients}}>Patients</a>
            <a href="/billing"{{#navBilling}} aria-current="page"{{/navBilling}} id="nav-billing">Billing</a>
          </nav>
          <div class="who">
            <span class="name">{{displayName}}</span> <span class="role">{{roleLabel}}</span>
            <form method="post" action="/signout" class="inline">
              <input type="hidden" name="csrf" value="{{csrf}}">
              <button type="submit" class="link" id="sign-out">Sign out</button>
            </form>
          </div>
        </header>
        {{/user}}
        <main>
        """

    static let foot = """
        </main>
        </body>
        </html>
        """

    static let signIn = """
        {{> head}}
        <section class="signin">
          <h1>vitalsd</h1>
          <p class="lede">Care manager's workspace</p>
          {{#notice}}<p class="flash ok" role="status">{{.}}</p>{{/notice}}
          {{#error}}<p class="flash error" role="alert">{{.}}</p>{{/error}}
          <form method="post" action="/signin">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <input type="hidden" name="next" value="{{next}}">
            <label>User name <input name="username" id="username" autocomplete="username" autocapitalize="none" required value="{{username}}" autofocus></label>
            <label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
            <button type="submit" class="primary" id="sign-in">Sign in</button>
          </form>
          <p class="fine">You are signed out after {{idleMinutes}} minutes without activity.</p>
        </section>
        {{> foot}}
        """

    static let worklist = """
        {{> head}}
        <section id="worklist" data-critical="{{openCritical}}" data-cursor="{{cursor}}">
        {{> worklist-body}}
        </section>
        <p class="fine keys">Keys: <kbd>1</kbd>–<kbd>5</kbd> tabs, <kbd>j</kbd>/<kbd>k</kbd> move, <kbd>Enter</kbd> open. The list updates by itself.</p>
        {{> foot}}
        """

    /// The worklist section alone, for live updates.
    static let worklistFragment = """
        <section id="worklist" data-critical="{{openCritical}}" data-cursor="{{cursor}}">
        {{> worklist-body}}
        </section>
        """

    static let worklistBody = """
        <nav class="tabs" aria-label="Worklist tabs">
        {{#tabs}}<a href="/worklist?tab={{id}}{{sortQuery}}" class="tab{{#current}} current{{/current}}" data-key="{{key}}" id="tab-{{id}}"{{#current}} aria-current="page"{{/current}}>{{label}}{{#hasCount}} <span class="count">{{count}}</span>{{/hasCount}}</a>{{/tabs}}
        <span class="critical-summary{{#openCritical}} alarm{{/openCritical}}" id="critical-count">{{criticalText}}</span>
        </nav>
        <p class="sorts fine">Sort within each priority: {{#sorts}}<a href="{{query}}" class="sort{{#current}} current{{/current}}"{{#current}} aria-current="true"{{/current}}>{{label}}</a> {{/sorts}}</p>
        <table class="worklist">
        <thead><tr><th>Priority</th><th>Patient</th><th>Condition</th><th>Latest · limit</th><th>Last 14 days</th><th class="num" title="Occurrences: readings that breached while the task was unresolved">Times</th><th>Status</th><th>Escalation</th><th>Owner</th><th>Opened</th></tr></thead>
        <tbody>
        {{#rows}}
        <tr data-task="{{id}}" data-version="{{version}}" class="row p-{{priority}}{{#escalated}} escalated{{/escalated}}">
          <td><span class="prio prio-{{priority}}">{{priorityLabel}}</span></td>
          <td class="patient"><a href="/tasks/{{id}}" class="open-task">{{patientName}}</a><div class="sub">{{patientID}}</div>{{#billing}}<div class="bill day-{{dayState}} min-{{minuteState}}" title="{{help}}">{{text}} {{call}}</div>{{/billing}}</td>
          <td>{{condition}}{{#badges}} <span class="badge badge-{{kind}}" title="{{help}}">{{label}}</span>{{/badges}}</td>
          <td class="value">{{value}}<div class="sub">{{limit}}</div></td>
          <td class="spark">{{{sparkline}}}</td>
          <td class="num">{{occurrences}}</td>
          <td>{{statusLabel}}{{#confirmation}}<div class="sub">{{.}}</div>{{/confirmation}}</td>
          <td class="escalation{{#escalationDue}} due{{/escalationDue}}">{{escalation}}</td>
          <td>{{owner}}</td>
          <td class="nowrap"><time datetime="{{openedISO}}" title="{{openedLocal}}">{{openedAgo}}</time></td>
        </tr>
        {{/rows}}
        {{^rows}}<tr><td colspan="10" class="empty">{{emptyText}}</td></tr>{{/rows}}
        </tbody>
        </table>
        {{#pager}}<nav class="pager">{{#previous}}<a href="{{.}}">← Previous</a>{{/previous}} <span>Page {{page}} of {{pages}} · {{total}} tasks</span> {{#next}}<a href="{{.}}">Next →</a>{{/next}}</nav>{{/pager}}
        """

    static let timeFields = """
        <fieldset class="time">
          <legend>Time spent (optional)</legend>
          <label>Minutes <input type="number" name="minutes" min="1" max="600" inputmode="numeric"></label>
          <label>Program <select name="program"><option value="rpm">RPM</option><option value="ccm">CCM</option></select></label>
          <label class="wide">Activity <input name="activity" maxlength="200" placeholder="e.g. phone call about the reading"></label>
          <label class="check"><input type="checkbox" name="interactive" value="yes"> Real-time interactive communication</label>
          <label>How <select name="modality"><option value="">—</option><option value="audio">Audio call</option><option value="video">Video call</option><option value="sync_message">Two-way messaging</option></select></label>
        </fieldset>
        """

    static let task = """
        {{> head}}
        <p class="crumbs"><a href="/worklist">← Worklist</a></p>
        {{#flash}}<p class="flash ok" role="status" id="flash">{{.}}</p>{{/flash}}
        {{#error}}<p class="flash error" role="alert" id="error">{{.}}</p>{{/error}}
        <article class="task p-{{priority}}" id="task" data-task="{{id}}" data-version="{{version}}">
          <header class="task-head">
            <span class="prio prio-{{priority}}">{{priorityLabel}}</span>
            <h1>{{condition}}</h1>
            <span class="status status-{{status}}" id="status">{{statusLabel}}</span>
            {{#badges}}<span class="badge badge-{{kind}}" title="{{help}}">{{label}}</span> {{/badges}}
          </header>
          <section class="patient-card">
            <h2><a href="/patients/{{patientID}}">{{patientName}}</a> <span class="sub">{{patientID}}</span></h2>
            <dl class="inline">
              {{#birth}}<dt>Born</dt><dd>{{.}}</dd>{{/birth}}
              {{#phone}}<dt>Phone</dt><dd><a href="tel:{{phoneLink}}">{{.}}</a></dd>{{/phone}}
              <dt>Care manager</dt><dd>{{careManager}}</dd>
              <dt>Programs</dt><dd>{{programs}}</dd>
            </dl>
          </section>
          <section class="facts">
            <div class="latest"><div class="big">{{value}}</div><div class="sub">{{limit}}</div>{{{sparkline}}}</div>
            <dl>
              <dt>Reason</dt><dd>{{reason}}</dd>
              <dt>Occurrences</dt><dd>{{occurrences}}</dd>
              {{#confirmation}}<dt>Re-measurement</dt><dd>{{.}}</dd>{{/confirmation}}
              <dt>Escalation</dt><dd>{{escalation}}</dd>
              <dt>Owner</dt><dd id="owner">{{owner}}</dd>
              <dt>Opened</dt><dd>{{openedLocal}} ({{openedAgo}})</dd>
              {{#acknowledged}}<dt>Acknowledged</dt><dd>{{.}}</dd>{{/acknowledged}}
              {{#resolved}}<dt>Resolved</dt><dd>{{.}}</dd>{{/resolved}}
              {{#disposition}}<dt>Disposition</dt><dd id="disposition">{{.}}</dd>{{/disposition}}
            </dl>
          </section>
          <section class="actions">
            <h2>Actions</h2>
            {{#canClaim}}
            <form method="post" action="/tasks/{{id}}/claim" id="claim" class="inline">
              <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="version" value="{{version}}">
              <button type="submit" class="primary">Claim</button>
            </form>
            {{/canClaim}}
            {{#canAssign}}
            <form method="post" action="/tasks/{{id}}/assign" id="assign" class="inline">
              <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="version" value="{{version}}">
              <label>Assign to <select name="owner">{{#assignees}}<option value="{{username}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/assignees}}</select></label>
              <button type="submit">Assign</button>
            </form>
            {{/canAssign}}
            {{#canAcknowledge}}
            <form method="post" action="/tasks/{{id}}/acknowledge" id="acknowledge" class="block">
              <input type="hidden" name="csrf" value="{{csrf}}">
              <h3>Acknowledge</h3>
              <label class="wide">Note (optional) <textarea name="note" rows="2" maxlength="5000"></textarea></label>
              {{> time-fields}}
              <button type="submit" class="primary">Acknowledge</button>
            </form>
            {{/canAcknowledge}}
            {{#canResolve}}
            <form method="post" action="/tasks/{{id}}/resolve" id="resolve" class="block">
              <input type="hidden" name="csrf" value="{{csrf}}">
              <h3>Resolve</h3>
              <label>Disposition <select name="disposition" required><option value="">Choose…</option>{{#dispositions}}<option value="{{value}}">{{label}}</option>{{/dispositions}}</select></label>
              <label class="wide">Note <textarea name="note" rows="3" maxlength="5000" required></textarea></label>
              {{> time-fields}}
              <button type="submit" class="primary">Resolve</button>
            </form>
            {{/canResolve}}
            {{#canReopen}}
            <form method="post" action="/tasks/{{id}}/reopen" id="reopen" class="block">
              <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="version" value="{{version}}">
              <h3>Reopen</h3>
              <label class="wide">Why <textarea name="note" rows="2" maxlength="5000" required></textarea></label>
              <button type="submit">Reopen</button>
            </form>
            {{/canReopen}}
            <form method="post" action="/tasks/{{id}}/notes" id="note" class="block">
              <input type="hidden" name="csrf" value="{{csrf}}">
              <h3>Add a note</h3>
              <label class="wide">Note <textarea name="note" rows="2" maxlength="5000" required></textarea></label>
              <button type="submit">Add note</button>
            </form>
          </section>
          <section class="history">
            <h2>History</h2>
            <ol class="timeline" id="history">
            {{#history}}<li class="h-{{kind}}"><time datetime="{{iso}}">{{when}}</time> <span class="who">{{who}}</span> <span class="what">{{what}}</span>{{#text}}<blockquote>{{.}}</blockquote>{{/text}}</li>{{/history}}
            </ol>
          </section>
          <section class="time-log">
            <h2>Time logged on this task</h2>
            {{#timeEntries}}<p>{{.}}</p>{{/timeEntries}}
            {{^timeEntries}}<p class="fine">None yet.</p>{{/timeEntries}}
          </section>
        </article>
        {{> foot}}
        """

    static let patient = """
        {{> head}}
        <p class="crumbs"><a href="/patients">← Patients</a></p>
        {{#flash}}<p class="flash ok" role="status" id="flash">{{.}}</p>{{/flash}}
        {{#error}}<p class="flash error" role="alert" id="error">{{.}}</p>{{/error}}
        <section class="patient-page" id="chart" data-patient="{{id}}" data-window="{{window}}">
          <h1>{{name}} <span class="sub">{{id}}</span></h1>
          <dl class="inline">
            {{#birth}}<dt>Born</dt><dd>{{.}}</dd>{{/birth}}
            {{#phone}}<dt>Phone</dt><dd>{{.}}</dd>{{/phone}}
            <dt>Care manager</dt><dd>{{careManager}}</dd>
            <dt>Programs</dt><dd>{{programs}}</dd>
            <dt>Time zone</dt><dd>{{timezone}}</dd>
            {{#episodes}}<dt>Episode</dt><dd>{{.}}</dd>{{/episodes}}
            {{^episodes}}<dt>Episode</dt><dd>none</dd>{{/episodes}}
          </dl>
          <h2>Unresolved tasks</h2>
          <ul class="tasks">
          {{#tasks}}<li><span class="prio prio-{{priority}}">{{priorityLabel}}</span> <a href="/tasks/{{id}}">{{condition}}</a> · {{statusLabel}} · {{owner}}</li>{{/tasks}}
          {{^tasks}}<li class="fine">None.</li>{{/tasks}}
          </ul>
          {{> patient-billing}}
          {{> patient-charts}}
          {{> patient-logbook}}
          {{> patient-devices}}
          {{> patient-thresholds}}
          {{> patient-timeline}}
          {{#canEdit}}
          <form method="post" action="/patients/{{id}}" id="patient-details" class="block">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <h2>Contact details and care manager</h2>
            <label class="wide">Name <input name="name" maxlength="200" value="{{nameValue}}"></label>
            <label>Date of birth <input name="birth_date" type="date" value="{{birthValue}}"></label>
            <label>Phone <input name="phone" type="tel" maxlength="40" value="{{phoneValue}}"></label>
            <label>Care manager <select name="care_manager">{{#managers}}<option value="{{username}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/managers}}</select></label>
            <button type="submit" class="primary">Save</button>
          </form>
          {{/canEdit}}
        </section>
        {{> foot}}
        """

    /// The window selector, and per vital its chart (SVG from ``Chart``, numbers only) and statistics.
    static let patientCharts = """
        <section class="charts" id="charts">
          <h2>Readings over {{windowLabel}}</h2>
          <nav class="tabs windows" aria-label="Window">{{#windows}}<a href="{{href}}" class="tab{{#current}} current{{/current}}" id="window-{{key}}"{{#current}} aria-current="page"{{/current}}>{{label}}</a>{{/windows}}</nav>
          {{#charts}}
          <figure class="vital-chart" id="chart-{{id}}">
            <figcaption>{{title}} <span class="sub">{{unit}}</span></figcaption>
            {{{svg}}}
            <table class="stats">
              <thead><tr><th></th><th class="num">Readings</th><th class="num">Mean</th><th class="num">Min</th><th class="num">Max</th><th class="num">Time in range 70–180</th></tr></thead>
              <tbody>{{#stats}}<tr><th>{{type}}</th><td class="num">{{count}}</td><td class="num">{{mean}}</td><td class="num stat-min">{{min}}</td><td class="num">{{max}}</td><td class="num">{{timeInRange}}{{^timeInRange}}—{{/timeInRange}}</td></tr>{{/stats}}</tbody>
            </table>
          </figure>
          {{/charts}}
          {{^charts}}<p class="fine">No readings in this window.</p>{{/charts}}
        </section>
        """

    static let patientLogbook = """
        <section class="logbook" id="logbook">
          <h2>Logbook <span class="sub">{{logbookTotal}} readings · times in the patient's zone</span></h2>
          <p><a href="{{csvLink}}" id="readings-csv" download>Download CSV ({{windowLabel}})</a></p>
          <table class="logbook">
          <thead><tr><th>Measured</th><th>Vital</th><th>As received</th><th>Canonical (UCUM)</th><th>Flags</th><th>Device</th></tr></thead>
          <tbody>
          {{#logbook}}<tr{{#event}} class="device-event"{{/event}}><td class="nowrap"><time datetime="{{iso}}">{{when}}</time></td><td>{{type}}</td><td>{{received}}</td><td>{{canonical}}</td><td>{{flags}}</td><td>{{device}}</td></tr>{{/logbook}}
          {{^logbook}}<tr><td colspan="6" class="empty">No readings in this window.</td></tr>{{/logbook}}
          </tbody>
          </table>
          {{#logbookPager}}<nav class="pager">{{#previous}}<a href="{{.}}">← Newer</a>{{/previous}} <span>Page {{page}} of {{pages}}</span> {{#next}}<a href="{{.}}">Older →</a>{{/next}}</nav>{{/logbookPager}}
        </section>
        """

    static let patientDevices = """
        <section class="devices" id="devices">
          <h2>Devices</h2>
          <table>
          <thead><tr><th>Device</th><th>Kind</th><th>Last reading</th><th>Battery</th><th>Signal</th><th>Recent error codes and HI/LO</th></tr></thead>
          <tbody>
          {{#devices}}<tr><td>{{id}}</td><td>{{kind}}</td><td>{{lastReading}}</td><td>{{battery}}{{^battery}}—{{/battery}}</td><td>{{signal}}{{^signal}}—{{/signal}}</td><td>{{#events}}<div>{{.}}</div>{{/events}}{{^events}}none{{/events}}</td></tr>{{/devices}}
          {{^devices}}<tr><td colspan="6" class="empty">No devices.</td></tr>{{/devices}}
          </tbody>
          </table>
        </section>
        """

    static let patientThresholds = """
        <section class="thresholds" id="thresholds">
          <h2>Limits and trend rules in force</h2>
          <table class="limits">
          <thead><tr><th>Vital</th><th>Level</th><th>Limit</th><th>From</th><th>Source</th></tr></thead>
          <tbody>
          {{#limitsInForce}}<tr{{#patient}} class="own"{{/patient}}><td>{{type}}</td><td>{{level}}</td><td>{{limit}}</td><td>{{origin}}</td><td class="sub">{{source}}</td></tr>{{/limitsInForce}}
          </tbody>
          </table>
          <table class="rules">
          <thead><tr><th>Rule</th><th>Level</th><th>Trend</th><th>From</th><th>Source</th></tr></thead>
          <tbody>
          {{#rulesInForce}}<tr><td>{{id}}</td><td>{{level}}</td><td>{{trend}}</td><td>{{origin}}</td><td class="sub">{{source}}</td></tr>{{/rulesInForce}}
          {{^rulesInForce}}<tr><td colspan="5" class="empty">No trend rules apply.</td></tr>{{/rulesInForce}}
          </tbody>
          </table>
          {{#canChangeLimits}}
          <form method="post" action="/patients/{{id}}/thresholds" id="change-limit" class="block">
            <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="window" value="{{window}}">
            <h3>Change a limit for this patient</h3>
            <label>Limit <select name="slot" required><option value="">Choose…</option>{{#slots}}<option value="{{value}}">{{label}}</option>{{/slots}}</select></label>
            <label>New value <input name="value" inputmode="decimal" maxlength="12"></label>
            <label class="wide">Reason <input name="reason" required maxlength="500" placeholder="e.g. Dr. Ng's order of today"></label>
            <button type="submit" name="action" value="set" class="primary">Set the limit</button>
            <button type="submit" name="action" value="clear">Back to the program's limit</button>
          </form>
          {{#hasRules}}
          <form method="post" action="/patients/{{id}}/rules" id="change-rule" class="block">
            <input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="window" value="{{window}}">
            <h3>Change a trend rule for this patient</h3>
            <label>Rule <select name="rule" required>{{#ruleChoices}}<option value="{{id}}">{{id}}</option>{{/ruleChoices}}</select></label>
            <label>New bound <input name="bound" inputmode="decimal" maxlength="12"></label>
            <label class="wide">Reason <input name="reason" required maxlength="500"></label>
            <button type="submit" name="action" value="bound" class="primary">Set the bound</button>
            <button type="submit" name="action" value="off">Switch off</button>
            <button type="submit" name="action" value="clear">As configured</button>
          </form>
          {{/hasRules}}
          {{/canChangeLimits}}
          {{^canChangeLimits}}<p class="fine">Clinicians and admins change limits and trend rules.</p>{{/canChangeLimits}}
        </section>
        """

    static let patientTimeline = """
        <section class="history" id="timeline">
          <h2>Timeline</h2>
          <ol class="timeline">
          {{#timeline}}<li class="h-{{kind}}"><time datetime="{{iso}}">{{when}}</time> <span class="who">{{who}}</span> <span class="what">{{what}}</span>{{#task}} <a href="/tasks/{{.}}">task {{.}}</a>{{/task}}{{#text}}<blockquote>{{.}}</blockquote>{{/text}}</li>{{/timeline}}
          {{^timeline}}<li class="fine">Nothing yet.</li>{{/timeline}}
          </ol>
        </section>
        """

    static let patients = """
        {{> head}}
        <h1>Patients</h1>
        <nav class="tabs">{{#filters}}<a href="/patients?show={{id}}" class="tab{{#current}} current{{/current}}">{{label}}</a>{{/filters}}</nav>
        <table class="patients">
        <thead><tr><th>Patient</th><th>Born</th><th>Phone</th><th>Care manager</th><th>Programs</th><th class="num">Unresolved tasks</th></tr></thead>
        <tbody>
        {{#rows}}<tr><td><a href="/patients/{{id}}">{{name}}</a><div class="sub">{{id}}</div></td><td>{{birth}}</td><td>{{phone}}</td><td>{{careManager}}</td><td>{{programs}}</td><td class="num">{{openTasks}}</td></tr>{{/rows}}
        {{^rows}}<tr><td colspan="6" class="empty">No patients here.</td></tr>{{/rows}}
        </tbody>
        </table>
        {{> foot}}
        """

    static let error = """
        {{> head}}
        <section class="error-page">
          <h1>{{heading}}</h1>
          <p>{{message}}</p>
          <p><a href="/worklist">Back to the worklist</a></p>
        </section>
        {{> foot}}
        """

    /// The patient page's billing panel: progress toward this month's codes, the timer, monitoring pauses.
    static let patientBilling = """
        <section class="billing" id="billing-progress">
          <h2>Billing progress</h2>
          {{#billing}}
          <div class="meters">
            {{#device}}
            <div class="meter state-{{dayState}}">
              <div class="label">Days of data</div>
              <div class="big"><span id="data-days">{{dataDays}}</span> <span class="sub">of {{full}}</span></div>
              <progress max="{{full}}" value="{{dataDays}}"></progress>
              <div class="sub">Device code so far: {{code}}</div>
            </div>
            {{/device}}
            <div class="meter state-{{minuteState}}">
              <div class="label">RPM minutes, {{month}}</div>
              <div class="big"><span id="rpm-minutes">{{rpmMinutes}}</span> <span class="sub">next {{nextTarget}}</span></div>
              <progress max="{{minuteMax}}" value="{{rpmMinutes}}"></progress>
              <div class="sub" id="interactive">{{#interactive}}Interactive communication done{{/interactive}}{{^interactive}}No interactive communication yet{{/interactive}} · codes: {{rpmCodes}}</div>
            </div>
            <div class="meter">
              <div class="label">CCM minutes, {{month}}</div>
              <div class="big"><span id="ccm-minutes">{{ccmMinutes}}</span></div>
              <div class="sub">Codes: {{ccmCodes}} · counted apart from RPM</div>
            </div>
          </div>
          <p class="fine" id="days-text">{{daysText}} {{monthDaysLeft}} days of {{month}} left after today.</p>
          {{/billing}}
          {{^billing}}<p class="fine">No RPM episode has started: nothing to bill yet.</p>{{/billing}}
          <form method="post" action="/patients/{{id}}/time" id="timer" class="block timer" data-served="{{servedAt}}">
            <input type="hidden" name="csrf" value="{{csrf}}">
            <input type="hidden" name="served_at" value="{{servedAt}}">
            <input type="hidden" name="served_token" value="{{servedToken}}">
            <input type="hidden" name="seconds" value="0" id="timer-seconds">
            <h3>Timer <span class="clock" id="timer-clock" data-seconds="0">0:00</span> <span class="sub" id="timer-state">starts when the page is visible</span></h3>
            <p class="fine">Counts while this page is open and visible; it stops counting while the tab is hidden. Stop logs the time measured (at most {{maxEntryMinutes}} minutes).</p>
            <label>Program <select name="program" id="timer-program"><option value="rpm">RPM</option><option value="ccm">CCM</option></select></label>
            <label class="wide">Activity <input name="activity" maxlength="200" placeholder="e.g. reviewed two weeks of weight" id="timer-activity"></label>
            <label>Interactive communication <select name="modality" id="timer-modality"><option value="">— none</option><option value="audio">Audio call</option><option value="video">Video call</option><option value="sync_message">Two-way messaging</option></select></label>
            <button type="submit" class="primary" id="timer-stop">Stop and log time</button>
          </form>
          <section class="monitoring" id="monitoring">
            <h3>Monitoring</h3>
            {{#paused}}
            <p class="flash paused" id="paused">Monitoring paused through {{until}} ({{reason}}, by {{by}}): readings are stored and shown, no alert task is raised.</p>
            {{#pausedReadings}}<p class="fine" id="paused-readings">Readings stored during this pause: {{count}}.{{#latest}} <span class="paused-reading">{{text}} <time>{{when}}</time></span>;{{/latest}}</p>{{/pausedReadings}}
            <form method="post" action="/patients/{{id}}/resume" id="resume" class="inline">
              <input type="hidden" name="csrf" value="{{csrf}}">
              <button type="submit">Resume monitoring now</button>
            </form>
            {{/paused}}
            {{^paused}}
            <form method="post" action="/patients/{{id}}/pause" id="pause" class="block">
              <input type="hidden" name="csrf" value="{{csrf}}">
              <label>Pause through <input type="date" name="until" required id="pause-until"></label>
              <label class="wide">Reason <input name="reason" maxlength="500" required placeholder="e.g. hospital stay" id="pause-reason"></label>
              <button type="submit">Pause monitoring</button>
            </form>
            {{/paused}}
            <ul class="pauses" id="pauses">{{#pauses}}<li>Paused {{from}} through {{until}} by {{by}}: {{reason}}{{#ended}} · {{.}}{{/ended}}</li>{{/pauses}}{{^pauses}}<li class="fine">Never paused.</li>{{/pauses}}</ul>
          </section>
          <h3>Time this month</h3>
          <ul class="time-entries" id="time-entries">
          {{#timeEntries}}<li data-entry="{{id}}" data-seconds="{{seconds}}"><time>{{when}}</time> {{length}} {{program}} by {{who}}{{#interactive}}, {{.}}{{/interactive}} — {{activity}}{{#timed}} <span class="sub">(timer)</span>{{/timed}}{{#state}} <span class="sub">{{.}}</span>{{/state}}</li>{{/timeEntries}}
          {{^timeEntries}}<li class="fine">No time logged this month.</li>{{/timeEntries}}
          </ul>
        </section>
        """

    /// The month's `report billing`, with each device code's evidence one click away.
    static let billing = """
        {{> head}}
        <h1>Billing, {{month}}</h1>
        <nav class="pager"><a href="/billing?month={{previous}}" id="previous-month">← {{previous}}</a>
          <form method="get" action="/billing" class="inline"><label>Month <input name="month" value="{{month}}" pattern="[0-9]{4}-[0-9]{2}" size="7"></label> <button type="submit">Show</button></form>
          <a href="/billing?month={{next}}" id="next-month">{{next}} →</a>
          <a href="/billing/csv?month={{month}}" id="billing-csv" download>Download CSV</a></nav>
        <p class="fine">Device periods that end in the month with their days of data and device code (99445, 99454, 99453), and the calendar month's RPM minutes (99470, 99457, 99458, with the interactive communication) and CCM minutes (99490, 99439), as <code>vitalsd report billing</code> gives them. Days of data are the patient's local dates.</p>
        <table class="billing" id="billing-report">
        <thead><tr><th>Patient</th><th>Device period</th><th class="num">Days of data</th><th>Device code</th><th class="num">RPM minutes</th><th>Interactive</th><th>RPM codes</th><th class="num">CCM minutes</th><th>CCM codes</th><th>Billing practitioner</th></tr></thead>
        <tbody>
        {{#rows}}<tr><td><a href="/patients/{{patientID}}">{{patientID}}</a></td><td>{{period}}</td><td class="num">{{#evidence}}<a href="{{.}}" class="evidence" title="The dated transmission log of this period">{{dataDays}}</a>{{/evidence}}{{^evidence}}{{dataDays}}{{/evidence}}</td><td>{{deviceCode}}</td><td class="num">{{rpmMinutes}}</td><td>{{interactive}}</td><td>{{managementCodes}}</td><td class="num">{{ccmMinutes}}</td><td>{{ccmCodes}}</td><td>{{practitioner}}</td></tr>{{/rows}}
        {{^rows}}<tr><td colspan="10" class="empty">No episode overlaps {{month}}.</td></tr>{{/rows}}
        </tbody>
        </table>
        <ul class="review">{{#review}}<li>Review {{patientID}}: {{note}}</li>{{/review}}</ul>
        {{> foot}}
        """

    /// The evidence of one device code: the period's dated transmission log (`vitalsd report days`).
    static let billingDays = """
        {{> head}}
        <p class="crumbs"><a href="/billing?month={{month}}">← Billing {{month}}</a></p>
        <h1>Days of data: <a href="/patients/{{patientID}}">{{patientID}}</a>, period {{number}}</h1>
        <p>Episode {{episode}}, period {{number}}: {{start}} to {{end}} ({{timezone}}). <strong id="days-count">{{count}}</strong> days of data → <strong id="days-code">{{code}}</strong>.</p>
        <table class="days" id="days">
        <thead><tr><th>Local date</th><th class="num">Readings</th><th>First</th><th>Last</th><th>Devices</th></tr></thead>
        <tbody>
        {{#days}}<tr><td>{{date}}</td><td class="num">{{readings}}</td><td>{{first}}</td><td>{{last}}</td><td>{{devices}}</td></tr>{{/days}}
        {{^days}}<tr><td colspan="5" class="empty">No device data in this period.</td></tr>{{/days}}
        </tbody>
        </table>
        {{> foot}}
        """
}
