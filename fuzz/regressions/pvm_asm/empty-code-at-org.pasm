; pvm  p2, r2,] 1
 
.org 0X1010
