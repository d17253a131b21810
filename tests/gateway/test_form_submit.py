"""gateway.web.submit, the one way a form page answers: commit and go on, or roll back and show the form again."""

from __future__ import annotations

import pytest

from gateway.errors import Conflict, LoginFailed
from gateway.web import submit


class Session:
    def __init__(self):
        self.calls = []

    def commit(self):
        self.calls.append("commit")

    def rollback(self):
        self.calls.append("rollback")


def test_a_domain_error_rolls_back_and_shows_the_form_with_its_message_and_status():
    db = Session()

    def fail():
        raise Conflict("Already there.", code="duplicate")

    answer = submit(db, fail, form=lambda **error: ("form", error), done=lambda _: "done")
    assert answer == ("form", {"status_code": 409, "error": "Already there."})
    assert db.calls == ["rollback"]


def test_a_form_may_reword_an_error_by_its_code():
    db = Session()

    def fail():
        raise LoginFailed()

    answer = submit(
        db, fail, form=lambda **error: error, done=lambda _: "done", messages={"login_failed": "Nothing was changed."}
    )
    assert answer == {"status_code": 401, "error": "Nothing was changed."}


def test_success_commits_then_answers_with_the_result():
    db = Session()
    answer = submit(db, lambda: 42, form=lambda **error: error, done=lambda result: ("done", result, list(db.calls)))
    assert answer == ("done", 42, ["commit"])
    db = Session()
    assert submit(db, lambda: 1, commit=False, form=lambda **e: e, done=lambda r: r) == 1 and db.calls == []


def test_anything_but_a_domain_error_is_not_a_form_error():
    db = Session()  # an internal failure reaches the app's handler (and the request session's rollback)
    with pytest.raises(ZeroDivisionError):
        submit(db, lambda: 1 / 0, form=lambda **e: e, done=lambda r: r)
    assert db.calls == []
