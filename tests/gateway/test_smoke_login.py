def test_api_login_reaches_me(client, factory, login, fake_clock):
    user = factory.user("practice_staff")
    csrf = login(client, user)
    r = client.get("/api/v1/auth/me")
    assert r.status_code == 200
    assert r.json()["username"] == user.username
    assert r.json()["csrf_token"] == csrf
