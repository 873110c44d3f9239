from t_koma.cli import main

main()
