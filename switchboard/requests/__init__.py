"""Change and service requests and the workflow tasks they carry."""
