"""The photos: where they are (layout), reading them (images), splitting (split), batches (datasets),
transforms, checks (integrity), made-up photos (synthetic) and getting them (download, remote_zip, archives,
petimages: which PetImages photos make the course's subset)."""
