/* The incident list, live: htmx asks the same URL for the rows every few seconds
 * (#vigil-live-list's hx-trigger) and swaps them in. This file only decides when not to:
 * while a row is ticked or an action chosen (the person is about to act on what they see),
 * while the tab is hidden, and when the answer is not the list (a login page after the
 * session ended). It marks rows that were not there before, and it keeps the admin's
 * action bar (actions.js) working on the new rows. On a phone the filters start closed.
 * Without JavaScript the list is a plain page with a Refresh link. */
"use strict";
{
    const LIST = "vigil-live-list";
    const PHONE = window.matchMedia("(max-width: 767px)");
    let rebind = false;

    document.documentElement.classList.add("vigil-js");

    function busy() {
        const form = document.getElementById("changelist-form");
        if (!form) {
            return false;
        }
        const action = form.querySelector("select[name=action]");
        return (
            form.querySelector("input.action-select:checked, #action-toggle:checked") !== null ||
            (action !== null && action.value !== "")
        );
    }

    function shownIds(root) {
        return new Set(
            [...root.querySelectorAll("#result_list tbody th.field-number a")].map((a) => a.textContent.trim())
        );
    }

    function cue(stale) {
        const list = document.getElementById(LIST);
        if (list) {
            list.classList.toggle("vigil-live-stale", stale);
        }
    }

    let before = null;

    document.addEventListener("htmx:beforeRequest", (event) => {
        if (event.detail.elt.id !== LIST) {
            return;
        }
        const held = busy();
        event.detail.elt.classList.toggle("vigil-live-paused", held);
        if (held || document.hidden) {
            event.preventDefault();
        }
    });

    document.addEventListener("htmx:beforeSwap", (event) => {
        if (event.detail.elt.id !== LIST) {
            return;
        }
        const text = event.detail.xhr.responseText || "";
        // Ticked while the answer was on its way, or not the list at all: keep what is shown.
        if (busy() || !text.includes('id="' + LIST + '"')) {
            event.detail.shouldSwap = false;
            cue(!busy());
            return;
        }
        before = shownIds(event.detail.elt);
    });

    // Fired on the new list (the swap replaced the element that asked).
    document.addEventListener("htmx:afterSettle", (event) => {
        const list = event.target;
        if (!list || list.id !== LIST || before === null) {
            return;
        }
        if (before.size) {
            list.querySelectorAll("#result_list tbody tr").forEach((row) => {
                const id = row.querySelector("th.field-number a");
                if (id && !before.has(id.textContent.trim())) {
                    row.classList.add("vigil-row-new");
                }
            });
        }
        before = null;
        const counter = document.querySelector("#changelist-form .action-counter");
        if (counter) {
            counter.dataset.actionsIcnt = list.dataset.count;
        }
        rebind = true;
    });

    for (const name of ["htmx:responseError", "htmx:sendError", "htmx:timeout"]) {
        document.addEventListener(name, (event) => {
            if (event.detail.elt && event.detail.elt.id === LIST) {
                cue(true);
            }
        });
    }

    // actions.js binds the rows it found when the page loaded. After a swap, bind it to the
    // new rows the first time one is ticked (capture runs before the rows' own handlers), so
    // a list left open all day binds once per selection, not once per refresh.
    document.addEventListener(
        "click",
        (event) => {
            if (!rebind || typeof window.Actions !== "function") {
                return;
            }
            if (!event.target.matches("#result_list input.action-select, #action-toggle")) {
                return;
            }
            rebind = false;
            window.Actions(document.querySelectorAll("tr input.action-select"));
        },
        true
    );

    function filtersOnPhone() {
        const box = document.querySelector("#changelist-filter details.vigil-filter-box");
        if (box) {
            box.open = !PHONE.matches;
        }
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", filtersOnPhone);
    } else {
        filtersOnPhone();
    }
}
