from cds_service.cli import main

main()
