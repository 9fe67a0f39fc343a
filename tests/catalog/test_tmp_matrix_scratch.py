import tests.integration.test_access_matrix as m

_orig = m.portal_routes
def mine(app):
    return [r for r in _orig(app) if r[0].startswith(("/catalog", "/book", "/api/v1/catalog"))]
m.portal_routes = mine
async def provide_all(world):
    from tests.matrix import catalog, foundation
    p = {}
    p.update(await foundation.provide(world))
    p.update(await catalog.provide(world))
    return p
m.provide_all = provide_all

async def test_matrix_mine(app, settings, db):
    await m.test_access_matrix(app, settings, db)

async def test_csrf_mine(app, settings, db):
    await m.test_every_post_route_requires_a_csrf_token(app, settings, db, "forged")
    await m.test_every_post_route_requires_a_csrf_token(app, settings, db, "none")
