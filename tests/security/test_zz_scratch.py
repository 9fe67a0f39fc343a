import logging
from tests.security.harness import clients_by_role
async def test_scratch(sw, caplog):
    async with clients_by_role(sw, roles=("owner",)) as c:
        c = c["owner"]
        for url in ["/locations/99999999999", "/locations/9999999999999999999999", "/book/ab%00c", "/locations?q=a%00b", "/sales?q=99999999999", "/api/v1/locations/99999999999"]:
            with caplog.at_level(logging.ERROR):
                caplog.clear()
                r = await c.get(url)
            print("URL", url, r.status_code, [ (rec.exc_info[0].__mro__ if rec.exc_info else None, str(rec.exc_info[1])[:150] if rec.exc_info else rec.message) for rec in caplog.records][:1])
