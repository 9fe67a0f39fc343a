from tests import factories


async def test_owner_signs_in_and_sees_dashboard(client, owner):
    await factories.login(client, owner)
    response = await client.get("/")
    assert response.status_code == 200
    assert "Welcome" in response.text
