from incidents.models import Status


def test_factory_walks_to_every_status(make_incident):
    for status in Status.values:
        assert make_incident(status=status).status == status
