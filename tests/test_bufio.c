#include <criterion/criterion.h>
Test(bufio, placeholder) {}
