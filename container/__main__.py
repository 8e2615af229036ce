from container.cli import console

console()
