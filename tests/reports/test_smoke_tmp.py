from tests.reports.scenario import build
from tests import factories

async def test_pages_render(db, app):
    sc = await build()
    owner = await factories.make_user("owner")
    async with factories.make_client(app) as c:
        await factories.login(c, owner)
        q = "start=2026-03-01&end=2026-03-31"
        for url in ["/reports", f"/reports/payments?{q}", f"/reports/liability?{q}", f"/reports/liability/{sc.alpha}/sales?{q}&column=sold",
                    f"/reports/revenue?{q}", f"/reports/fees?{q}", f"/reports/journal?{q}", f"/reports/trial-balance?{q}",
                    f"/reports/payments.csv?{q}", f"/reports/payments.xlsx?{q}", f"/reports/journal.csv?{q}", f"/api/v1/reports/payments?{q}", f"/api/v1/reports/liability?{q}"]:
            r = await c.get(url)
            print(url, r.status_code, len(r.content))
            if r.status_code != 200: print(r.text[:3000])
            assert r.status_code == 200
        r = await c.get(f"/reports/payments.csv?{q}")
        print(r.text)
        r = await c.get(f"/reports/journal.csv?{q}")
        print(r.text[:1500])
