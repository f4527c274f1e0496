import { IsInt, IsNumberString, Length, Matches, Max, Min } from 'class-validator';

export class CreateOrderDto {
  @Matches(/^sku-[a-z0-9-]+$/)
  sku!: string;

  @IsInt()
  @Min(1)
  @Max(10)
  quantity!: number;

  @IsNumberString({ no_symbols: true })
  @Length(12, 19)
  cardNumber!: string;
}
